// Stage graphs joined into one ONNX graph at load time, at the protobuf wire level: fields this code does not rename
// are copied byte for byte, so nothing an exporter wrote is lost.
//
// Why: a stage graph takes its carried state from the host and returns its own to it. On a GPU that is the worker's
// cost (1.5 MB per frame over the default model's three cloud stages; one graph ran 5.9x faster bare on an H200 at
// batch 512, bench/README.md "GPU workers"). Stage graphs chain by tensor name (stage s's state outputs are stage
// s + 1's inputs), so joining them is renaming what is internal to each and concatenating.
import { ConfigError } from '@cascade/proto';
import type { Manifest } from './manifest-core.js';

// Field numbers of onnx.proto (ModelProto, GraphProto, NodeProto, TensorProto, ValueInfoProto, AttributeProto).
const MODEL = { graph: 7, opsetImport: 8, functions: 25 } as const;
const GRAPH = { node: 1, name: 2, initializer: 5, input: 11, output: 12, sparseInitializer: 15 } as const;
const NODE = { input: 1, output: 2, name: 3, attribute: 5 } as const;
const TENSOR = { name: 8, externalData: 13 } as const;
const VALUE_INFO = { name: 1 } as const;
const ATTRIBUTE = { g: 6, graphs: 11 } as const;

interface Field {
  no: number;
  /** The whole field: tag, length and payload. */
  raw: Uint8Array;
  /** The payload of a length-delimited field. */
  bytes?: Uint8Array;
}

function varint(buf: Uint8Array, pos: number): [number, number] {
  let value = 0;
  let mul = 1;
  for (;;) {
    if (pos >= buf.length) throw new RangeError('truncated varint');
    const b = buf[pos++]!;
    value += (b & 0x7f) * mul;
    if (b < 0x80) return [value, pos];
    mul *= 128;
  }
}

function fields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const start = pos;
    const [tag, p] = varint(buf, pos);
    pos = p;
    const no = Math.floor(tag / 8);
    const type = tag % 8;
    let bytes: Uint8Array | undefined;
    if (type === 0) pos = varint(buf, pos)[1];
    else if (type === 1) pos += 8;
    else if (type === 5) pos += 4;
    else if (type === 2) {
      const [len, q] = varint(buf, pos);
      bytes = buf.subarray(q, q + len);
      pos = q + len;
    } else throw new RangeError(`unsupported wire type ${type}`);
    if (pos > buf.length) throw new RangeError('truncated field');
    out.push({ no, raw: buf.subarray(start, pos), ...(bytes ? { bytes } : {}) });
  }
  return out;
}

function encodeVarint(n: number): number[] {
  const out: number[] = [];
  while (n >= 0x80) {
    out.push((n % 128) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
  return out;
}

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

const utf8 = new TextEncoder();
const text = new TextDecoder();

function lengthDelimited(no: number, payload: Uint8Array): Uint8Array {
  return concat([Uint8Array.from([...encodeVarint(no * 8 + 2), ...encodeVarint(payload.length)]), payload]);
}

/** A message with its string fields `names` passed through `rename`, every other field as it was. */
function renameStrings(msg: Uint8Array, names: readonly number[], rename: (s: string) => string): Uint8Array {
  return concat(
    fields(msg).map((f) =>
      names.includes(f.no) && f.bytes ? lengthDelimited(f.no, utf8.encode(rename(text.decode(f.bytes)))) : f.raw,
    ),
  );
}

function stringField(msg: Uint8Array, no: number): string {
  const f = fields(msg).find((x) => x.no === no);
  return f?.bytes ? text.decode(f.bytes) : '';
}

/** The exit outputs of stages `first`.. in order: what the fused graph returns. */
export function fusedOutputs(m: Manifest, first: number): string[] {
  return m.stages.slice(first).flatMap((s) => s.exits.map((e) => m.exits[e]!.output));
}

/**
 * Stages `first`.. of a model as one ONNX model: inputs are stage `first`'s, outputs every later exit's logits;
 * each stage's internal names get a prefix of their own, the names the manifest gives (image, states, logits) stay.
 * `graphs[i]` is stage `first + i`'s file. Throws ConfigError for what it cannot join (subgraphs, external data,
 * differing opsets).
 */
export function fuseStages(m: Manifest, first: number, graphs: Uint8Array[]): Uint8Array {
  const stages = m.stages.slice(first);
  if (stages.length < 2 || graphs.length !== stages.length)
    throw new RangeError(`fuseStages: ${stages.length} stages from ${first}, ${graphs.length} graphs`);
  const shared = new Set<string>(stages.flatMap((s) => [...s.inputs, ...s.outputs].map((t) => t.name)));
  const wanted = new Set(fusedOutputs(m, first));
  const refuse = (why: string) => {
    throw new ConfigError(`cannot join stages ${first}.. of ${m.name}@${m.version} into one graph: ${why}`);
  };
  let header: Field[] | undefined;
  let opsets = '';
  const nodes: Uint8Array[] = [];
  const initializers: Uint8Array[] = [];
  const inputs: Uint8Array[] = [];
  const outputs: Uint8Array[] = [];
  const declared = new Set<string>();
  stages.forEach((stage, i) => {
    const model = fields(graphs[i]!);
    if (model.some((f) => f.no === MODEL.functions)) refuse(`stage ${stage.index} defines local functions`);
    const opset = model
      .filter((f) => f.no === MODEL.opsetImport)
      .map((f) => Array.from(f.raw).join(','))
      .join(';');
    if (i === 0) [header, opsets] = [model, opset];
    else if (opset !== opsets) refuse(`stage ${stage.index} imports other opsets than stage ${first}`);
    const graph = model.find((f) => f.no === MODEL.graph)?.bytes;
    if (!graph) return refuse(`stage ${stage.index} has no graph`);
    const prefix = `stage${stage.index}/`;
    const rename = (name: string) => (name === '' || shared.has(name) ? name : prefix + name);
    for (const f of fields(graph)) {
      switch (f.no) {
        case GRAPH.node: {
          for (const a of fields(f.bytes!).filter((x) => x.no === NODE.attribute))
            if (fields(a.bytes!).some((x) => x.no === ATTRIBUTE.g || x.no === ATTRIBUTE.graphs))
              refuse(`stage ${stage.index} has a node with a subgraph`);
          nodes.push(lengthDelimited(f.no, renameStrings(f.bytes!, [NODE.input, NODE.output, NODE.name], rename)));
          break;
        }
        case GRAPH.initializer:
          if (fields(f.bytes!).some((x) => x.no === TENSOR.externalData))
            refuse(`stage ${stage.index} keeps weights in external data`);
          initializers.push(lengthDelimited(f.no, renameStrings(f.bytes!, [TENSOR.name], rename)));
          break;
        case GRAPH.sparseInitializer:
          refuse(`stage ${stage.index} has sparse initializers`);
          break;
        case GRAPH.input:
          // The first stage's inputs are the graph's; later stages' come from the stage before (or are the image).
          if (i === 0) inputs.push(f.raw);
          break;
        case GRAPH.output: {
          const out = stringField(f.bytes!, VALUE_INFO.name);
          if (wanted.has(out) && !declared.has(out)) {
            declared.add(out);
            outputs.push(f.raw);
          }
          break;
        }
        default:
          break; // the graph's name, doc string, value_info (shapes onnxruntime infers again): not carried
      }
    }
  });
  if (declared.size !== wanted.size) refuse(`the stage graphs declare ${declared.size} of ${wanted.size} exit outputs`);
  const name = lengthDelimited(GRAPH.name, utf8.encode(`${m.name} stages ${first}..${m.stages.length - 1}`));
  const graph = concat([...nodes, name, ...initializers, ...inputs, ...outputs]);
  return concat([
    ...header!.filter((f) => f.no !== MODEL.graph).map((f) => f.raw),
    lengthDelimited(MODEL.graph, graph),
  ]);
}
