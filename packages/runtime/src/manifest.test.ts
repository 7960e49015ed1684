import { Ajv2020 } from 'ajv/dist/2020.js';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const MODELS = new URL('../../../models/', import.meta.url).pathname;
const schema = JSON.parse(readFileSync(`${MODELS}manifest.schema.json`, 'utf8'));
const manifest = JSON.parse(readFileSync(`${MODELS}ranet-cifar10/manifest.json`, 'utf8'));
const validate = new Ajv2020({ allErrors: true, strict: false }).compile(schema);

describe('manifest schema - the contract both languages check', () => {
  it('the committed default model conforms', () => {
    expect(validate(manifest), JSON.stringify(validate.errors)).toBe(true);
  });

  it('refuses what a runtime could not use, naming the place', () => {
    const broken = structuredClone(manifest);
    broken.stages[0].inputs[0].shape[0] = 1; // batch dimension must be dynamic
    delete broken.exits[0].macs;
    expect(validate(broken)).toBe(false);
    const where = validate.errors!.map((e) => e.instancePath).sort();
    expect(where).toEqual(['/exits/0', '/stages/0/inputs/0/shape/0']);
  });
});
