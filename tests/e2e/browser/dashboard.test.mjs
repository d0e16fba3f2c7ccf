// The on-call flow in a real headless Chromium: a scripted outage (the demo
// upstream switching the downstream's faults), the dashboard's suggested
// window and its copied dry-run command, the replay with live progress, and
// the same page showing the window closed and the replay's start in the
// audit. Screenshots go to OUT_DIR.
import { chromium } from 'playwright-core';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import assert from 'node:assert/strict';

const BUILD = process.env.BUILD_DIR;
const DSN = process.env.DASHBOARD_DSN;
const OUT = process.env.OUT_DIR;
const BUCKET_S = 5;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'replayd-browser-'));
const children = [];
const results = [];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const log = (...a) => console.log('[browser-test]', ...a);

function start(name, args) {
  const out = fs.openSync(path.join(tmp, `${name}.log`), 'a');
  const child = spawn(path.join(BUILD, 'bin', name), args, { stdio: ['ignore', out, out] });
  children.push(child);
  return child;
}

async function waitForFile(file, ms = 20000) {
  for (const until = Date.now() + ms; Date.now() < until; await sleep(100)) {
    if (fs.existsSync(file)) return fs.readFileSync(file, 'utf8');
  }
  throw new Error(`${file} did not appear`);
}

async function step(name, fn) {
  try {
    await fn();
    results.push([name, true]);
    log('PASS', name);
  } catch (e) {
    results.push([name, false]);
    log('FAIL', name, '\n', e.stack || e);
    throw e;
  }
}

function replayctl(grpc, args) {
  return execFileSync(path.join(BUILD, 'bin', 'replayctl'), ['-s', grpc, ...args],
                      { encoding: 'utf8', timeout: 60000 });
}

async function main() {
  // The downstream and replayd, each on a port it picks.
  // More threads than replayd's connections, so /admin/faults never queues.
  start('downstream_server', ['--listen', '127.0.0.1:0', '--threads', '128',
                              '--port-file', path.join(tmp, 'ds.port')]);
  const dsPort = Number((await waitForFile(path.join(tmp, 'ds.port'))).trim());
  const retry = '{max_attempts: 2, base_delay: 100ms, max_delay: 200ms}';
  fs.writeFileSync(path.join(tmp, 'replayd.yaml'), [
    `database_url: "${DSN}"`,
    'grpc_listen: "127.0.0.1:0"',
    'http_listen: "127.0.0.1:0"',
    `port_file: ${path.join(tmp, 'replayd.ports')}`,
    'sinks:',
    `  - {name: crm, type: http, url: "http://127.0.0.1:${dsPort}/records",` +
      ` lookup_url: "http://127.0.0.1:${dsPort}/records/{idempotency_key}"}`,
    'routes:',
    `  - {name: orders-to-crm, sources: [orders], sink: crm, retry: ${retry}}`,
    `  - {name: billing-to-crm, sources: [billing], sink: crm, retry: ${retry}}`,
    ''].join('\n'));
  start('replayd', ['--config', path.join(tmp, 'replayd.yaml')]);
  const ports = Object.fromEntries((await waitForFile(path.join(tmp, 'replayd.ports'), 60000))
    .trim().split('\n').map((l) => l.split('=')));
  const grpc = `127.0.0.1:${ports.grpc}`;
  const base = `http://127.0.0.1:${ports.http}`;

  // The script: 8 s healthy, a 10 s outage (HTTP 503), 8 s healthy; orders
  // sequence numbers 20..22 never published.
  const script = {};
  await new Promise((resolve, reject) => {
    const demo = spawn(path.join(BUILD, 'bin', 'demo_upstream'), [
      '--replayd', base, '--downstream', `http://127.0.0.1:${dsPort}`, '--rate', '5',
      '--duration', '26', '--outage-after', '8', '--outage-for', '10', '--hole-at', '20',
      '--hole-size', '3'], { stdio: ['ignore', 'pipe', 'inherit'] });
    let buf = '';
    demo.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        script[line.event] = line;
      }
    });
    demo.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`demo_upstream exit ${code}`))));
  });
  log('script', JSON.stringify(script));
  assert.ok(script.outage_start && script.outage_end, 'the outage was scripted');
  assert.equal(script.done.failed_batches, 0);
  // Each fault switch took effect between its request and its answer.
  const outageStart = [Date.parse(script.outage_start.requested_at), Date.parse(script.outage_start.at)];
  const outageEnd = [Date.parse(script.outage_end.requested_at), Date.parse(script.outage_end.at)];
  const from = new Date(Math.floor(Date.parse(script.start.at) / 1000 / BUCKET_S) * BUCKET_S * 1000 - 10000)
    .toISOString().replace('.000Z', 'Z');

  // Wait until delivery has settled (nothing pending or retrying).
  let totals;
  for (let i = 0; ; i++) {
    totals = (await (await fetch(`${base}/api/timeline?from=${from}`)).json()).totals;
    if (Number(totals.pending) + Number(totals.retrying) === 0) break;
    if (i > 300) throw new Error('delivery did not settle: ' + JSON.stringify(totals));
    await sleep(100);
  }
  const failedInLog = Number(totals.failed);
  log('totals', JSON.stringify(totals));
  assert.ok(failedInLog > 0, 'the outage failed some events');

  // A fresh profile directory (--user-data-dir) for every run.
  const context = await chromium.launchPersistentContext(fs.mkdtempSync(path.join(tmp, 'profile-')), {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
           '--disable-component-update', '--no-first-run'],
    viewport: { width: 1366, height: 768 },
  });
  try {
    await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base });
    const page = await context.newPage();
    const requests = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(`${base}/?from=${from}&to=now&bucket_seconds=${BUCKET_S}`);
    let window;

    await step('the suggested window covers the outage to within one bucket', async () => {
      await page.waitForSelector('[data-testid=window]', { timeout: 15000 });
      const windows = await page.$$eval('[data-testid=window]', (els) =>
        els.map((e) => ({ from: e.dataset.from, to: e.dataset.to,
                          command: e.querySelector('[data-testid=command]').textContent })));
      assert.equal(windows.length, 1, JSON.stringify(windows));
      window = windows[0];
      const wFrom = Date.parse(window.from);
      const wTo = Date.parse(window.to);
      const bucket = BUCKET_S * 1000;
      const slack = 1000;  // delivery and retry latency after the fault switch
      assert.ok(wFrom <= outageStart[1] + slack && wFrom >= outageStart[0] - bucket - slack,
                `window from ${window.from} vs outage start ${JSON.stringify(script.outage_start)}`);
      assert.ok(wTo >= outageEnd[0] - slack && wTo <= outageEnd[1] + bucket + slack,
                `window to ${window.to} vs outage end ${JSON.stringify(script.outage_end)}`);
      assert.equal(await page.locator('[data-testid=window-band]').count(), 1);
    });

    await step('the copied command is the right dry run', async () => {
      const want = `replayctl dry-run --from ${window.from} --to ${window.to} --source billing --source orders`;
      assert.equal(window.command, want);
      await page.click('[data-testid=copy]');
      await page.waitForFunction(() => document.body.dataset.copied);
      assert.equal(await page.evaluate(() => document.body.dataset.copied), want);
      const clip = await page.evaluate(() => navigator.clipboard.readText().catch(() => null));
      if (clip !== null) assert.equal(clip, want);
      // Run it as copied: it selects exactly the events the outage failed.
      const report = JSON.parse(replayctl(grpc, [...want.split(' ').slice(1), '-o', 'json']));
      assert.equal(Number(report.would_deliver), failedInLog, JSON.stringify(report));
    });

    await step('the missing sequence numbers are marked', async () => {
      const gaps = await page.$$eval('[data-testid=sequence-gap]', (els) => els.map((e) => e.textContent));
      assert.equal(gaps.length, 1, JSON.stringify(gaps));
      assert.match(gaps[0], /orders/);
      assert.match(gaps[0], /20–22/);
      assert.ok(await page.locator('[data-testid=missing-band]').count() >= 1);
    });

    await step('readable on a laptop screen: no horizontal scroll, nothing from the network', async () => {
      const [scrollWidth, innerWidth] = await page.evaluate(() =>
        [document.documentElement.scrollWidth, window.innerWidth]);
      assert.ok(scrollWidth <= innerWidth, `scrollWidth ${scrollWidth} > ${innerWidth}`);
      const foreign = requests.filter((u) => !u.startsWith(base));
      assert.deepEqual(foreign, []);
    });
    await page.screenshot({ path: path.join(OUT, 'dashboard-outage.png'), fullPage: true });

    await step('a log younger than the default range fills the chart', async () => {
      const fresh = await context.newPage();
      try {
        await fresh.goto(`${base}/`);  // the default range: the last hour
        await fresh.waitForFunction(() => Number(document.body.dataset.refreshes) >= 1, null,
                                    { timeout: 15000 });
        assert.equal(await fresh.evaluate(() => document.body.dataset.fitted), 'true');
        // The range starts shortly before the first event, not an hour back.
        const summary = await fresh.textContent('#summary');
        const rangeFrom = Date.parse(summary.split(' – ')[0]);
        const firstEvent = Date.parse(script.start.at);
        assert.ok(rangeFrom <= firstEvent && rangeFrom >= firstEvent - 60000,
                  `range from ${summary} vs first event ${script.start.at}`);
        // The first bar is in the plot's first quarter, not at its right edge.
        const [left, right, firstBar] = await fresh.$eval('#chart svg', (svg) => {
          const axis = svg.querySelector('line');
          const xs = [...svg.querySelectorAll('rect[class^=bar-]')].map((r) => Number(r.getAttribute('x')));
          return [Number(axis.getAttribute('x1')), Number(axis.getAttribute('x2')), Math.min(...xs)];
        });
        assert.ok(firstBar - left <= (right - left) / 4,
                  `first bar at ${firstBar} in a plot from ${left} to ${right}`);
        await fresh.screenshot({ path: path.join(OUT, 'dashboard-young-log.png'), fullPage: true });
      } finally {
        await fresh.close();
      }
    });

    let replayId = '';
    await step('after the replay the same page shows the window closed', async () => {
      const started = JSON.parse(replayctl(grpc, ['start', ...window.command.split(' ').slice(2),
                                                  '--yes', '--reason', 'browser test', '-o', 'json']));
      log('replay', started.replay_id);
      replayId = started.replay_id;
      await page.waitForSelector(`[data-testid=replay][data-replay-id="${started.replay_id}"]`,
                                 { timeout: 15000 });
      await page.waitForSelector(`[data-testid=replay][data-replay-id="${started.replay_id}"][data-state=COMPLETED]`,
                                 { timeout: 90000 });
      await page.waitForSelector('[data-testid=no-windows]', { timeout: 15000 });
      assert.equal(await page.locator('[data-testid=window]').count(), 0);
      const row = await page.textContent(`[data-testid=replay][data-replay-id="${started.replay_id}"]`);
      // delivered / skipped / failed: every event the outage failed, delivered once.
      assert.match(row, new RegExp(`\\b${failedInLog} / \\d+ / 0\\b`));
    });

    await step('the event lookup shows a replayed event\'s trace', async () => {
      await page.fill('#trace-source', 'orders');
      await page.fill('#trace-id', 'orders-69');  // published 13 s in: mid-outage
      await page.click('#lookup button');
      await page.waitForSelector('[data-testid=trace-attempts]', { timeout: 10000 });
      assert.equal(await page.textContent('[data-testid=trace-outcome]'), 'SUCCEEDED');
      const attempts = await page.textContent('[data-testid=trace-attempts]');
      assert.match(attempts, /replay:/);
      assert.match(attempts, /FAILED/);
    });

    await step('the audit shows the replay\'s start with its reason', async () => {
      const entry = `[data-testid=audit-entry][data-action=start][data-replay-id="${replayId}"]`;
      await page.waitForSelector(entry, { timeout: 15000 });
      assert.match(await page.textContent(entry), /browser test/);
    });
    await step('a diff of the replayed window shows its classes and samples', async () => {
      const started = JSON.parse(replayctl(grpc, ['diff', ...window.command.split(' ').slice(2),
                                                  '--reason', 'browser test', '-o', 'json']));
      const planId = started.replay_id;
      log('diff', planId);
      const row = `[data-testid=compensation-plan][data-plan-id="${planId}"]`;
      await page.waitForSelector(`${row}[data-state=ready]`, { timeout: 60000 });
      const plan = JSON.parse(replayctl(grpc, ['compensate', 'show', planId, '-o', 'json']));
      const byClass = {};
      for (const c of plan.counts) byClass[c.diff_class] = (byClass[c.diff_class] || 0) + Number(c.count);
      // Every event of the window was delivered by the replay: all in sync.
      assert.ok(byClass.in_sync > 0, JSON.stringify(plan.counts));
      assert.deepEqual(Object.keys(byClass), ['in_sync'], JSON.stringify(plan.counts));
      assert.match(await page.textContent(row), new RegExp(`in_sync ${byClass.in_sync}\\b`));
      const missing = Number(plan.missing_upstream || 0);
      if (missing > 0) assert.match(await page.textContent(row), new RegExp(`missing_upstream ${missing}\\b`));
      await page.click(`${row} a[data-plan]`);
      await page.waitForSelector('[data-testid=compensation-sample][data-class=in_sync]', { timeout: 15000 });
      assert.equal(await page.locator('[data-testid=compensation-sample]').count(),
                   Math.min(5, byClass.in_sync));
    });
    await page.screenshot({ path: path.join(OUT, 'dashboard-after-replay.png'), fullPage: true });
    log('screenshots in', OUT);
  } finally {
    await context.close();
  }
}

let code = 0;
try {
  await main();
} catch (e) {
  if (!results.some(([, ok]) => !ok)) console.error(e.stack || e);
  code = 1;
  log('logs kept in', tmp);
} finally {
  for (const c of children) c.kill('SIGTERM');
  const passed = results.filter(([, ok]) => ok).length;
  console.log(`browser: ${passed} passed, ${results.length - passed + (code && results.every(([, ok]) => ok) ? 1 : 0)} failed`);
}
process.exit(code);
