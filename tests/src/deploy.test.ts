import { startNatsServer, track } from '@cascade/demo';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { devicePermissions, ROLE_PERMISSIONS, sitePermissions } from '@cascade/ctl';
import { REPO, requireProgram } from './harness.js';

const K8S = join(REPO, 'deploy/k8s');
const DOCKERFILE = readFileSync(join(REPO, 'deploy/docker/Dockerfile'), 'utf8');

type Doc = { kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any; [k: string]: any };

function load(dir: string): Doc[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(dir, f), 'utf8')).map((d) => {
        expect(d.errors, f).toEqual([]);
        return d.toJS() as Doc;
      }),
    );
}

/** EXPOSE port of each Dockerfile stage. */
function exposedPorts(): Record<string, number> {
  const out: Record<string, number> = {};
  let stage = '';
  for (const line of DOCKERFILE.split('\n')) {
    const from = /^FROM \S+ AS (\S+)/.exec(line);
    if (from) stage = from[1]!;
    const expose = /^EXPOSE (\d+)/.exec(line);
    if (expose) out[stage] = Number(expose[1]);
  }
  return out;
}

const IMAGE_TARGET: Record<string, string> = {
  'cascade-worker': 'worker',
  'cascade-edge': 'edge',
  'cascade-worker-cuda': 'worker-cuda',
};
const base = load(join(K8S, 'base'));
const workloads = base.filter((d) => d.kind === 'Deployment' || d.kind === 'DaemonSet');
const containers = workloads.flatMap((w) => (w.spec.template.spec.containers as any[]).map((c) => ({ w, c })));

describe('kubernetes manifests', () => {
  it('kustomization lists every manifest of its folder, and the files exist', () => {
    for (const dir of ['base', 'hpa', 'fleet']) {
      const k = parseAllDocuments(readFileSync(join(K8S, dir, 'kustomization.yaml'), 'utf8'))[0]!.toJS();
      const listed = [...(k.resources as string[]), ...((k.patches ?? []) as { path?: string }[]).flatMap((p) => p.path ?? [])]; // prettier-ignore
      for (const r of listed) expect(existsSync(join(K8S, dir, r)), r).toBe(true);
      const files = readdirSync(join(K8S, dir)).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml');
      expect(files.filter((f) => !listed.includes(f))).toEqual([]);
    }
  });

  it('NATS runs as a three-node cluster: a StatefulSet with stable names, JetStream on a persistent volume each, deploy/nats configs verbatim', () => {
    const sts = base.find((d) => d.kind === 'StatefulSet' && d.metadata.name === 'nats')!;
    const cm = base.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'nats-config')!;
    for (const f of ['nats.conf', 'cluster.conf'])
      expect(cm.data[f], f).toBe(readFileSync(join(REPO, 'deploy/nats', f), 'utf8'));
    expect(cm.data['nats.conf']).toMatch(/jetstream \{\s*store_dir: \$CASCADE_NATS_STORE_DIR/);
    const c = sts.spec.template.spec.containers[0];
    expect(c.args).toEqual(['-c', '/etc/nats/cluster.conf']);
    expect(sts.spec.replicas).toBe(3);
    expect(sts.spec.podManagementPolicy).toBe('Parallel');
    const headless = base.find((d) => d.kind === 'Service' && d.metadata.name === sts.spec.serviceName)!;
    expect(headless.spec.clusterIP).toBe('None');
    const data = sts.spec.volumeClaimTemplates[0];
    expect(c.volumeMounts.find((m: any) => m.name === data.metadata.name).mountPath).toBe('/data');
    const env = Object.fromEntries(c.env.map((e: any) => [e.name, e]));
    expect(env.CASCADE_NATS_STORE_DIR.value).toMatch(/^\/data\//);
    expect(env.CASCADE_NATS_NAME.valueFrom.fieldRef.fieldPath).toBe('metadata.name');
    // Routes name every pod of the StatefulSet by its stable DNS name, with the route password.
    for (let i = 0; i < 3; i++)
      expect(env[`CASCADE_NATS_ROUTE_${i + 1}`].value).toBe(
        `nats-route://route:$(CASCADE_ROUTE_PASSWORD)@nats-${i}.${sts.spec.serviceName}:6222`,
      );
    // Every variable the configuration reads is set.
    const used = new Set(
      [...`${cm.data['nats.conf']}${cm.data['cluster.conf']}`.matchAll(/\$(CASCADE_[A-Z0-9_]+)/g)].map((m) => m[1]),
    );
    for (const v of used) expect(env[v!], v).toBeDefined();
    for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) {
      expect(c[probe].httpGet.path, probe).toMatch(/^\/healthz/);
      expect(c[probe].httpGet.port, probe).toBe('monitor');
    }
    for (const e of c.env.filter((x: any) => x.valueFrom?.secretKeyRef)) {
      const secret = base.find((d) => d.kind === 'Secret' && d.metadata.name === e.valueFrom.secretKeyRef.name);
      expect(secret?.stringData?.[e.valueFrom.secretKeyRef.key], e.name).toBe('CHANGE_ME');
    }
    const pdb = base.find((d) => d.kind === 'PodDisruptionBudget' && d.metadata.name === 'nats')!;
    expect(pdb.spec.maxUnavailable).toBe(1);
    const svc = base.find((d) => d.kind === 'Service' && d.metadata.name === 'nats')!;
    expect(svc.spec.ports.map((p: any) => p.port)).toContain(4222);
    const leaf = base.find((d) => d.kind === 'Service' && d.metadata.name === 'nats-leaf')!;
    expect(leaf.spec.ports.map((p: any) => p.port)).toEqual([7422]);
  });

  it('workers and edges take every NATS node as a seed; workers keep the results stream on all three', () => {
    const seeds = [0, 1, 2].map((i) => `nats://nats-${i}.nats-headless.cascade.svc:4222`).join(',');
    const worker = workloads.find((w) => w.kind === 'Deployment')!.spec.template.spec.containers[0];
    const env = Object.fromEntries(worker.env.map((e: any) => [e.name, e.value]));
    expect(env.NATS_URL).toBe(seeds);
    expect(env.CASCADE_RESULTS_REPLICAS).toBe('3');
    const edgeConfig = base.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'cascade-edge')!;
    expect(edgeConfig.data.NATS_URL).toBe(seeds);
  });

  it('workload selectors match their pod labels', () => {
    expect(workloads.map((w) => w.kind).sort()).toEqual(['DaemonSet', 'Deployment']);
    for (const w of workloads) {
      for (const [k, v] of Object.entries(w.spec.selector.matchLabels))
        expect(w.spec.template.metadata.labels[k], `${w.metadata.name} ${k}`).toBe(v);
    }
  });

  it('services and the disruption budget select real pods, on ports the pods declare', () => {
    for (const s of base.filter((d) => d.kind === 'Service' || d.kind === 'PodDisruptionBudget')) {
      const selector = s.kind === 'Service' ? s.spec.selector : s.spec.selector.matchLabels;
      const target = [...workloads, ...base.filter((d) => d.kind === 'StatefulSet')].find((w) =>
        Object.entries(selector).every(([k, v]) => w.spec.template.metadata.labels[k] === v),
      );
      expect(target, s.metadata.name).toBeDefined();
      if (s.kind === 'Service') {
        const names = target!.spec.template.spec.containers.flatMap((c: any) => c.ports.map((p: any) => p.name));
        for (const p of s.spec.ports) expect(names).toContain(p.targetPort);
      }
    }
  });

  it('probes point at /healthz and /readyz on the declared metrics port', () => {
    for (const { w, c } of containers) {
      expect(c.livenessProbe.httpGet.path, w.metadata.name).toBe('/healthz');
      expect(c.readinessProbe.httpGet.path, w.metadata.name).toBe('/readyz');
      const names = c.ports.map((p: any) => p.name);
      expect(names).toContain(c.livenessProbe.httpGet.port);
      expect(names).toContain(c.readinessProbe.httpGet.port);
    }
  });

  it('images and ports agree with the Dockerfile stages', () => {
    const exposed = exposedPorts();
    for (const { c } of containers) {
      const [name, tag] = (c.image as string).split(':');
      const target = IMAGE_TARGET[name!];
      expect(target, c.image).toBeDefined();
      expect(tag).toMatch(/^\d+\.\d+\.\d+$/);
      expect(DOCKERFILE).toContain(`--target ${target} `);
      expect(c.ports.map((p: any) => p.containerPort)).toContain(exposed[target!]);
    }
  });

  it('every container has CPU and memory requests and limits and runs unprivileged', () => {
    for (const { w, c } of containers) {
      for (const kind of ['requests', 'limits']) {
        expect(c.resources?.[kind]?.cpu, `${w.metadata.name} ${kind}.cpu`).toBeDefined();
        expect(c.resources?.[kind]?.memory, `${w.metadata.name} ${kind}.memory`).toBeDefined();
      }
      expect(w.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
      expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
    }
  });

  it('KEDA scales the worker Deployment on queue depth; the HPA variant does the same', () => {
    const so = base.find((d) => d.kind === 'ScaledObject')!;
    expect(so.spec.scaleTargetRef.name).toBe(workloads.find((w) => w.kind === 'Deployment')!.metadata.name);
    expect(so.spec.triggers[0].metadata.query).toContain('cascade_worker_queue_depth');
    const hpa = load(join(K8S, 'hpa')).find((d) => d.kind === 'HorizontalPodAutoscaler')!;
    expect(hpa.spec.scaleTargetRef.name).toBe('cascade-worker');
    expect(hpa.spec.metrics[0].pods.metric.name).toBe('cascade_worker_queue_depth');
  });

  it('edge agents run on camera nodes with the camera URL from the ConfigMap and NATS passwords from a Secret', () => {
    const ds = workloads.find((w) => w.kind === 'DaemonSet')!;
    expect(ds.spec.template.spec.nodeSelector).toEqual({ 'cascade.io/camera': 'true' });
    const c = ds.spec.template.spec.containers[0];
    const cm = base.find((d) => d.kind === 'ConfigMap' && d.metadata.name === c.envFrom[0].configMapRef.name)!;
    expect(cm.data.CASCADE_SOURCE).toBeDefined();
    const secretNames = base.filter((d) => d.kind === 'Secret').map((d) => d.metadata.name);
    for (const { w } of containers) {
      for (const v of w.spec.template.spec.volumes.filter((x: any) => x.secret))
        expect(secretNames).toContain(v.secret.secretName);
      expect(JSON.stringify(w)).not.toMatch(/NATS_PASSWORD"?,\s*"?value/); // passwords only from files
    }
    for (const s of base.filter((d) => d.kind === 'Secret'))
      for (const v of Object.values(s.stringData)) expect(v).toBe('CHANGE_ME');
    // The outbox (results the stream has not acknowledged) is on the node, not in the container.
    const outbox = c.volumeMounts.find((m: any) => m.mountPath === '/var/lib/cascade/outbox');
    expect(ds.spec.template.spec.volumes.find((v: any) => v.name === outbox.name).hostPath.path).toBe(
      '/var/lib/cascade/outbox',
    );
  });
});

/** The objects of a kustomization as kubectl apply -k would send them (k8s-check -render). */
function rendered(dir: string): Doc[] {
  const bin = join(REPO, '.tools/bin/k8s-check');
  const r = spawnSync(bin, ['-render', join(K8S, dir)], { cwd: REPO, encoding: 'utf8' });
  expect(r.status, r.stderr).toBe(0);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Doc);
}

/** deploy/k8s/check, built by scripts/setup test: the manifests against the API's Go types. */
function k8sCheck(...paths: string[]): { status: number | null; out: string } {
  const bin = join(REPO, '.tools/bin/k8s-check');
  if (!existsSync(bin))
    throw new Error(`${bin} is missing: run scripts/setup test (it builds deploy/k8s/check with Go)`);
  const r = spawnSync(bin, paths, { cwd: REPO, encoding: 'utf8' });
  return { status: r.status, out: r.stdout + r.stderr };
}

describe('kubernetes manifests against the API schema (k8s-check: Kubernetes 1.37, KEDA 2.21)', () => {
  it('every object kubectl apply -k would send, of both kustomizations, passes: no unknown field, wrong type or missing required one', () => {
    const { status, out } = k8sCheck('deploy/k8s/base', 'deploy/k8s/hpa', 'deploy/k8s/fleet');
    expect(out).toMatch(/Kubernetes API v0\.37\.\d+, KEDA v2\.21\.\d+/);
    expect(out, out).not.toContain('FAIL');
    expect(status, out).toBe(0);
    // Every manifest of the folders was rendered and checked, the ScaledObject only in base (hpa deletes it).
    const checked = (dir: string) => out.split('\n').filter((l) => l.startsWith(`ok    deploy/k8s/${dir}:`));
    expect(checked('base')).toHaveLength(base.length);
    expect(checked('base').some((l) => l.includes('keda.sh/v1alpha1 ScaledObject cascade/cascade-worker'))).toBe(true);
    expect(checked('hpa')).toHaveLength(base.length); // less the ScaledObject, plus the HPA
    expect(checked('hpa').some((l) => l.includes('ScaledObject'))).toBe(false);
    expect(checked('hpa').some((l) => l.includes('autoscaling/v2 HorizontalPodAutoscaler'))).toBe(true);
    expect(checked('fleet')).toHaveLength(base.length - 4); // less the four Secrets of passwords
  });

  it('in every kustomization, an environment variable refers only to variables listed above it (else $(X) stays as is)', () => {
    for (const dir of ['base', 'hpa', 'fleet']) {
      for (const o of rendered(dir).filter((d) => d.spec?.template?.spec?.containers)) {
        for (const c of o.spec.template.spec.containers as {
          name: string;
          env?: { name: string; value?: string }[];
        }[]) {
          const seen = new Set<string>();
          for (const e of c.env ?? []) {
            for (const [, ref] of (e.value ?? '').matchAll(/\$\(([A-Za-z_][A-Za-z0-9_]*)\)/g))
              expect(seen.has(ref!), `${dir} ${o.kind} ${o.metadata.name}: ${e.name} refers to ${ref}, not above it`).toBe(true); // prettier-ignore
            seen.add(e.name);
          }
        }
      }
    }
  });

  it('operator mode (fleet): NATS runs deploy/nats/operator.conf beside the server.conf of cascade auth init; workers and agents log in with credentials; no password is left', () => {
    const fleet = rendered('fleet');
    const cm = fleet.find((d) => d.kind === 'ConfigMap' && d.metadata.name === 'nats-config')!;
    expect(cm.data['nats.conf']).toBe(readFileSync(join(REPO, 'deploy/nats/operator.conf'), 'utf8'));
    expect(cm.data['cluster.conf']).toBe(readFileSync(join(REPO, 'deploy/nats/cluster.conf'), 'utf8'));
    const pod = (kind: string) => fleet.find((d) => d.kind === kind)!.spec.template.spec;
    const nats = pod('StatefulSet');
    const config = nats.volumes.find((v: any) => v.name === 'config');
    expect(config.projected.sources.map((x: any) => x.configMap.name)).toEqual(['nats-config', 'nats-operator']);
    const env = (spec: any) =>
      Object.fromEntries(spec.containers[0].env.map((e: any) => [e.name, e.value ?? e.valueFrom]));
    const secret = (spec: any, mount: string) => {
      const m = spec.containers[0].volumeMounts.find((v: any) => mount.startsWith(`${v.mountPath}/`));
      return spec.volumes.find((v: any) => v.name === m.name).secret.secretName;
    };
    expect(env(pod('Deployment')).NATS_CREDS).toBe('/var/run/secrets/nats/worker.creds');
    expect(secret(pod('Deployment'), '/var/run/secrets/nats/worker.creds')).toBe('cascade-worker');
    const edge = env(pod('DaemonSet'));
    expect(edge.NATS_CREDS).toBe('/var/run/secrets/nats/$(NODE_NAME).creds');
    expect(edge.CASCADE_EDGE_ID).toBe('cam-1'); // the camera: the device comes from the credentials
    expect(secret(pod('DaemonSet'), edge.NATS_CREDS)).toBe('cascade-devices');
    // Nothing asks for a password: no variable, Secret or login of the base's.
    const text = JSON.stringify(fleet);
    for (const gone of ['NATS_USER', 'NATS_PASSWORD', 'nats-worker', 'nats-monitor', 'nats-edges', 'nats-sites'])
      expect(text.includes(gone), gone).toBe(false);
    expect(Object.keys(env(nats)).filter((k) => k.endsWith('_PASSWORD'))).toEqual(['CASCADE_ROUTE_PASSWORD']);
  });

  it('a broken manifest fails, naming the object, the field and what is wrong', () => {
    const dir = mkdtempSync(join(tmpdir(), 'k8s-check-'));
    const file = join(dir, 'broken.yaml');
    writeFileSync(
      file,
      `apiVersion: apps/v1
kind: Deployment
metadata: { name: typo }
spec:
  selector: { matchLabels: { app: w } }
  template:
    metadata: { labels: { app: w } }
    spec:
      containers:
        - image: cascade-worker:0.1.0
          imagePullPolcy: Always
          ports: [{ name: metrics }]
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: wrong-type }
spec:
  replicas: "two"
  selector: { matchLabels: { app: w } }
  template:
    metadata: { labels: { app: w } }
    spec: { containers: [{ name: w, image: x, imagePullPolicy: Sometimes }] }
---
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata: { name: so }
spec:
  scaleTargetRef: { name: w }
  minReplicas: 1
  triggers: [{ metadata: { query: q } }]
---
apiVersion: v1
kind: Service
metadata: { name: fine }
spec: { ports: [{ port: 9464 }] }
---
apiVersion: example.com/v1
kind: Widget
metadata: { name: w }
`,
    );
    const { status, out } = k8sCheck(file);
    expect(status, out).toBe(1);
    const fails = out.split('\n').filter((l) => l.startsWith('FAIL'));
    const at = (object: string, what: string) =>
      expect(
        fails.some((l) => l.includes(object) && l.includes(what)),
        what,
      ).toBe(true);
    at('Deployment typo', 'unknown field "spec.template.spec.containers[0].imagePullPolcy"');
    at('Deployment typo', 'spec.template.spec.containers[0].name: required by Container');
    at('Deployment typo', 'spec.template.spec.containers[0].ports[0].containerPort: required by ContainerPort');
    at(
      'Deployment wrong-type',
      'cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of type int32',
    );
    at('Deployment wrong-type', 'imagePullPolicy: "Sometimes" is not one of Always, Never, IfNotPresent');
    at('ScaledObject so', 'unknown field "spec.minReplicas"');
    at('ScaledObject so', 'spec.triggers[0].type: required by ScaleTriggers');
    at('Widget w', 'not a kind this checker knows');
    expect(out).toMatch(/^ok {4}\S+broken\.yaml: v1 Service fine$/m);
    expect(out).toContain('5 objects, 4 failed');
  });
});

describe('compose', () => {
  it('the cluster and site overlays: three NATS nodes as seeds, R3 results, an edge behind a site leaf node', () => {
    requireProgram('docker-compose');
    const dir = join(REPO, 'deploy/compose');
    const files = ['docker-compose.yml', 'docker-compose.cluster.yml', 'docker-compose.site.yml'].flatMap((f) => [
      '-f',
      f,
    ]);
    const out = execFileSync('docker-compose', ['--env-file', '.env.example', ...files, 'config'], {
      cwd: dir,
      encoding: 'utf8',
    });
    const c = parseAllDocuments(out)[0]!.toJS();
    for (const n of ['nats', 'nats-2', 'nats-3']) {
      expect(c.services[n].command).toEqual(['-c', '/etc/nats/cluster.conf']);
      expect(c.services[n].environment.CASCADE_NATS_ROUTE_3).toBe('nats-route://route:change-me-route@nats-3:6222');
    }
    expect(new Set(['nats', 'nats-2', 'nats-3'].map((n) => c.services[n].environment.CASCADE_NATS_NAME)).size).toBe(3);
    expect(c.services['worker-1'].environment.NATS_URL).toBe('nats://nats:4222,nats://nats-2:4222,nats://nats-3:4222');
    expect(c.services['worker-1'].environment.CASCADE_RESULTS_REPLICAS).toBe('3');
    expect(c.services['site-a'].command).toEqual(['-c', '/etc/nats/site.conf']);
    expect(c.services['edge-agent'].environment).toMatchObject({
      NATS_URL: 'nats://site-a:4222',
      NATS_USER: 'camera',
      CASCADE_EDGE_ID: 'site-a.agent-1.cam-1',
    });
  });

  it('docker-compose config validates the file and its TLS overlay', () => {
    requireProgram('docker-compose');
    const dir = join(REPO, 'deploy/compose');
    const args = ['--env-file', '.env.example', '-f', 'docker-compose.yml'];
    const plain = execFileSync('docker-compose', [...args, 'config'], { cwd: dir, encoding: 'utf8' });
    const services = Object.keys(parseAllDocuments(plain)[0]!.toJS().services).sort();
    expect(services).toEqual(['edge-agent', 'grafana', 'nats', 'nats-exporter', 'prometheus', 'worker-1', 'worker-2']);
    const tls = parseAllDocuments(
      execFileSync('docker-compose', [...args, '-f', 'docker-compose.tls.yml', 'config'], {
        cwd: dir,
        encoding: 'utf8',
      }),
    )[0]!.toJS();
    expect(tls.services.nats.command).toContain('/etc/nats/nats-tls.conf');
    expect(tls.services['edge-agent'].environment.NATS_CA).toBe('/certs/ca.pem');
    expect(tls.services['edge-agent'].environment.NATS_USER).toBe('cam-1');
    // Every mounted host path exists in the repository (certs and .env are the operator's).
    for (const s of Object.values(tls.services) as any[]) {
      for (const v of s.volumes ?? []) {
        const src = typeof v === 'string' ? v.split(':')[0] : v.source;
        if (Object.keys(tls.volumes ?? {}).includes(src)) continue; // named volumes (JetStream, the edge outbox)
        if (!String(src).endsWith('/certs')) expect(existsSync(src), src).toBe(true);
      }
    }
  });
});

describe('images', () => {
  it("the worker image's /app (pnpm deploy --prod, as the Dockerfile builds it) serves on its own", async () => {
    const out = join(mkdtempSync(join(tmpdir(), 'cascade-image-')), 'cloud');
    execFileSync('pnpm', ['--filter', '@cascade/cloud', 'deploy', '--legacy', '--prod', out], {
      cwd: REPO,
      stdio: 'ignore',
    });
    const nats = await startNatsServer();
    const proc = track(
      spawn(process.execPath, [join(out, 'dist/cli.js'), '--nats', nats.url, '--metrics-port', '-1'], {
        env: { ...process.env, CASCADE_MODEL: join(REPO, 'models/ranet-cifar10') },
        stdio: ['ignore', 'ignore', 'pipe'],
      }),
    );
    try {
      const log = await new Promise<string>((resolve, reject) => {
        let text = '';
        proc.stderr!.on('data', (d: Buffer) => {
          text += d.toString();
          if (text.includes('worker_started')) resolve(text);
        });
        proc.once('exit', (code) => reject(new Error(`exited ${code}: ${text}`)));
      });
      expect(log).toMatch(/"model":"ranet-cifar10"/);
    } finally {
      proc.kill('SIGTERM');
      await new Promise((r) => proc.once('exit', r));
      await nats.stop();
    }
  });
});

/** The publish and subscribe allow lists of a block of deploy/nats/nats.conf, from where `start` matches. */
function natsConfPermissions(start: RegExp): { pub: string[]; sub: string[] } {
  const text = readFileSync(join(REPO, 'deploy/nats/nats.conf'), 'utf8').replace(/#.*$/gm, '');
  const from = text.search(start);
  expect(from, String(start)).toBeGreaterThanOrEqual(0);
  const list = (kind: string) => {
    const m = new RegExp(`${kind}:\\s*\\{\\s*allow:\\s*\\[([^\\]]*)\\]`).exec(text.slice(from))!;
    return [...m[1]!.matchAll(/"([^"]+)"/g)].map((x) => x[1]!).sort();
  };
  return { pub: list('publish'), sub: list('subscribe') };
}

describe('one set of permissions per role, for passwords and for operator mode', () => {
  it("cascade's worker and monitor JWTs allow what nats.conf's roles do; a device what nats.conf's camera block does, for its cameras; a site what its site block does", () => {
    for (const [role, start] of [
      ['worker', /WORKER = \{/],
      ['monitor', /MONITOR = \{/],
    ] as const) {
      const p = ROLE_PERMISSIONS[role];
      expect({ pub: [...p.pub!.allow!].sort(), sub: [...p.sub!.allow!].sort() }, role).toEqual(
        natsConfPermissions(start),
      );
    }
    // A device's wildcard over its cameras, read for one camera, is the camera block of nats.conf.
    const d = devicePermissions('site-a.agent-1');
    const one = (xs: string[]) => xs.map((x) => x.replace('site-a.agent-1.*', 'cam-1').replace('site-a.agent-1', 'cam-1')).sort(); // prettier-ignore
    expect({ pub: one(d.pub!.allow!), sub: one(d.sub!.allow!) }).toEqual(natsConfPermissions(/user: cam-1\b/));
    // A site's leaf link in operator mode may carry what the site user of nats.conf may.
    const site = sitePermissions('site-a');
    expect({ pub: [...site.pub!.allow!].sort(), sub: [...site.sub!.allow!].sort() }).toEqual(natsConfPermissions(/user: site-a\b/)); // prettier-ignore
  });
});
