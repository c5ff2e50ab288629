// npm run test:e2e: the dashboard in a real browser (Debian's chromium, driven by
// playwright-core) against the bundled Worker in Miniflare with a local D1 and Queue.
// Screenshots of each page land in test-results/screenshots/.
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { chromium } from "playwright-core";
import { bundle, EXAMPLE, ROOT, schemaStatements, SECRET, startWorker } from "../../bench/lib.mjs";

const ADMIN = "browser-admin-token";
const SHOTS = join(ROOT, "test-results/screenshots");
const CHROMIUM = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

let worker;
let browser;
let page;
/** A local receiver for the destination the tests add: what it was sent. */
const received = [];
let receiver;
const deadAlert = `browser-dead-${Date.now()}`;

async function postAlert(alert_id, survey_id, score, timestamp) {
  const screens = [
    { ...EXAMPLE.survey_info.screens[0], answer: score },
    { ...EXAMPLE.survey_info.screens[1], answer: `reason for ${score}` },
  ];
  const body = JSON.stringify({ ...EXAMPLE, alert_id, survey_id, timestamp, survey_info: { ...EXAMPLE.survey_info, screens } });
  const res = await fetch(`${worker.url}/webhooks/1flow/${SECRET}`, { method: "POST", headers: { "content-type": "application/json" }, body });
  assert.equal(res.status, 200);
}

async function shot(name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });
}

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  receiver = createServer((req, res) => {
    let body = "";
    req.on("data", (chunk) => (body += chunk));
    req.on("end", () => {
      received.push({ method: req.method, url: req.url, body });
      res.writeHead(200, { "content-type": "text/plain" }).end("thanks");
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  worker = await startWorker({
    scriptPath: bundle(join(ROOT, "bench/.build/browser")),
    bindings: {
      WEBHOOK_SECRET: SECRET,
      ADMIN_TOKEN: ADMIN,
      // Nothing listens there: deliveries stay pending, which the pages show.
      DESTINATIONS: JSON.stringify([{ name: "crm", url: "http://127.0.0.1:9/hook" }]),
      ENCRYPTION_KEY: "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=",
    },
    setupSql: schemaStatements(),
  });
  const weeks = ["2026-10-05", "2026-10-12", "2026-10-19", "2026-10-26", "2026-11-02", "2026-11-09"];
  const scores = ["10", "9", "3", "8", "10", "6", "9", "10", "2", "9", "10", "7"];
  for (let i = 0; i < scores.length; i++) {
    await postAlert(`browser-${i}-${Date.now()}`, "30cc805f1f0c541d4dcfccef", scores[i], `${weeks[i % weeks.length]}T10:0${i % 10}:00Z`);
  }
  // A response of today (the overview's "Today" counts every response by the day it arrived).
  await postAlert(deadAlert, "30cc805f1f0c541d4dcfccef", "4", new Date().toISOString());
  await fetch(`${worker.url}/webhooks/1flow/${SECRET}`, { method: "POST", headers: { "content-type": "text/plain" }, body: "not json" });
  await worker.db
    .prepare(
      "INSERT INTO deliveries (alert_id, destination, status, attempts, last_status, last_error, updated_at) VALUES (?, 'crm', 'dead', 10, 503, 'HTTP 503', ?) ON CONFLICT DO UPDATE SET status = 'dead', attempts = 10, last_error = 'HTTP 503'",
    )
    .bind(deadAlert, new Date().toISOString())
    .run();
  // A destination the breaker paused: the Destinations page shows it, and Resume now resumes it.
  await worker.db
    .prepare(
      `INSERT INTO destination_health (destination, state, consecutive_failures, paused_until, last_status, last_error)
       VALUES ('crm', 'paused', 10, ?, 503, 'HTTP 503')`,
    )
    .bind(new Date(Date.now() + 3_600_000).toISOString())
    .run();
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  page = await browser.newPage({ viewport: { width: 1000, height: 800 } });
});

after(async () => {
  receiver?.close();
  await browser?.close();
  await worker?.mf.dispose();
});

test("a wrong token shows an error", async () => {
  await page.goto(`${worker.url}/dashboard`);
  assert.match(page.url(), /\/dashboard\/login$/);
  await page.fill('input[name="token"]', "not-the-token");
  await page.click('button[type="submit"]');
  await page.waitForSelector("#error");
  assert.match(await page.textContent("#error"), /not this Worker's ADMIN_TOKEN/);
  await shot("1-login-error");
});

test("sign in and see the totals", async () => {
  await page.fill('input[name="token"]', ADMIN);
  await page.click('button[type="submit"]');
  await page.waitForURL(`${worker.url}/dashboard`);
  const today = await page.locator("section", { hasText: "Today (UTC)" }).locator(".card").allTextContents();
  // Counted by arrival: the twelve submitted weeks ago and today's, all posted today.
  assert.ok(today.some((t) => /^13\s*responses arrived/.test(t)), `today: ${today.join(" | ")}`);
  assert.ok(today.some((t) => /^1\s*rejected/.test(t)), `today: ${today.join(" | ")}`);
  // The 30-day sparklines, drawn by uPlot: the responses' and the destination's, on canvases that are not blank.
  await page.waitForSelector("#spark-responses canvas");
  const sparks = await page.evaluate(() => window.overviewCharts.map((u) => ({ id: u.root.parentElement.id, points: u.data[0].length, drawn: u.ctx.getImageData(0, 0, u.ctx.canvas.width, u.ctx.canvas.height).data.some((v) => v !== 0) })));
  assert.deepEqual(sparks.map((s) => [s.id, s.points, s.drawn]), [["spark-responses", 30, true], ["spark-destination-0", 30, true]]);
  await shot("2-overview");
});

test("the survey page: its charts drawn by uPlot with dated axes, its tables equal to the API's numbers, and on a phone", async () => {
  await page.click("text=Net Promoter Score (NPS)");
  await page.waitForSelector("#nps-chart");
  // The six weeks of the seeded responses, by week.
  const since = "2026-10-05";
  const until = "2026-11-15";
  await page.goto(`${worker.url}/dashboard/surveys/30cc805f1f0c541d4dcfccef?since=${since}&until=${until}`);
  await page.waitForFunction(() => window.insightsCharts?.trend !== undefined);
  for (const id of ["nps-chart", "volume-chart", "scores-chart"]) {
    // Each chart is a canvas with pixels drawn on it, and a size on the page.
    const painted = await page.evaluate((id) => {
      const canvas = document.querySelector(`#${id} canvas`);
      if (!canvas) return 0;
      const { data } = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
      let n = 0;
      for (let i = 3; i < data.length; i += 4) if (data[i] !== 0) n++;
      return n;
    }, id);
    assert.ok(painted > 1000, `${id}: ${painted} pixels drawn`);
  }
  // The time axis is labelled with dates (uPlot's own labels for its ticks).
  const labels = await page.evaluate(() => window.insightsCharts.trend.axes[0]._values ?? []);
  assert.ok(labels.length >= 2 && labels.every((l) => /\d/.test(String(l))), `x labels: ${labels.join(" | ")}`);
  assert.ok(labels.some((l) => /Oct|Nov|\d+\/\d+/.test(String(l))), `x labels: ${labels.join(" | ")}`);
  // The series table holds the API's numbers, bucket by bucket.
  const api = await (
    await fetch(`${worker.url}/api/surveys/30cc805f1f0c541d4dcfccef/insights?since=${since}T00:00:00.000Z&until=2026-11-16T00:00:00.000Z&bucket=week`, {
      headers: { authorization: `Bearer ${ADMIN}` },
    })
  ).json();
  const rows = await page.locator("#series-table tr:not(.head)").evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent.trim())));
  assert.deepEqual(
    rows,
    api.series.map((b) => [b.bucket, String(b.responses), b.nps === null ? "–" : String(b.nps)]),
  );
  assert.equal(await page.textContent("#responses-total"), String(api.responses));
  const scores = await page.locator("#scores-table tr:not(.head)").evaluateAll((trs) => trs.map((tr) => tr.querySelectorAll("td")[1].textContent.trim()));
  assert.deepEqual(scores, api.questions[0].distribution.map((d) => String(d.count)));
  await shot("3-survey-page");
  await page.setViewportSize({ width: 375, height: 800 });
  await page.reload();
  await page.waitForFunction(() => window.insightsCharts?.trend !== undefined);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 380, `the page fits a 375 px screen: ${width} px wide`);
  await shot("3-survey-page-375px");
  await page.setViewportSize({ width: 1000, height: 800 });
});

test("open a response", async () => {
  await page.click('header a[href="/dashboard/responses"]');
  await page.click(`a[href="/dashboard/responses/${deadAlert}"]`);
  await page.waitForSelector("#answers");
  assert.match(await page.textContent("#answers"), /reason for 4/);
  await shot("4-response");
});

test("replay a dead delivery and see it change", async () => {
  await page.click('header a[href="/dashboard/deliveries"]');
  const row = page.locator("tr.delivery", { hasText: deadAlert });
  assert.equal(await row.locator(".status").textContent(), "dead");
  await shot("5-deliveries-before");
  await row.locator('button:has-text("Replay")').click();
  await page.waitForSelector("#result");
  assert.match(await page.textContent("#result"), /Replayed/);
  assert.equal(await page.locator("tr.delivery", { hasText: deadAlert }).locator(".status").textContent(), "pending");
  await shot("6-deliveries-after");
});

test("a paused destination, and Resume now", async () => {
  await page.click('header a[href="/dashboard/destinations"]');
  const row = page.locator("#destination-crm");
  assert.match(await row.locator(".state").textContent(), /^paused/);
  assert.match(await row.textContent(), /HTTP 503/);
  await shot("7-destinations-paused");
  await row.locator('button:has-text("Resume now")').click();
  await page.waitForSelector("#result");
  assert.match(await page.textContent("#result"), /Resumed/);
  assert.match(await page.locator("#destination-crm .state").textContent(), /^active/);
  await shot("8-destinations-resumed");
});

test("add a jsonata destination, its body previewed live as the transform is typed", async () => {
  await page.click("#add-destination");
  await page.fill('input[name="name"]', "team-hook");
  await page.fill('input[name="url"]', `http://127.0.0.1:${receiver.address().port}/hook`);
  await page.selectOption('select[name="format"]', "jsonata");
  await page.fill('input[name="secret"]', "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
  await page.fill("#transform", '{ "text": "NPS " & answers[type="nps"].answer & " on " & survey.id }');
  await page
    .waitForFunction(() => document.getElementById("preview")?.textContent?.includes('"text":"NPS '), null, { timeout: 10_000 })
    .catch(async () => assert.fail(`the preview says: ${await page.textContent("#preview")}`));
  assert.match(await page.textContent("#preview"), /^POST http:\/\/127\.0\.0\.1:\d+\/hook\n\n\{"text":"NPS \d+ on 30cc805f1f0c541d4dcfccef"\}/);
  await shot("9-destination-form-preview");
  await page.click("#save");
  await page.waitForSelector("#result");
  assert.match(await page.textContent("#result"), /Added team-hook/);
  assert.match(await page.textContent("#destination-team-hook"), /jsonata · managed here/);
});

test("send a test to it: the receiver gets the example response through the transform", async () => {
  await page.locator("#destination-team-hook").locator('button:has-text("Send test")').click();
  await page.waitForSelector("#result");
  assert.match(await page.textContent("#result"), /Test send to team-hook: HTTP 200 in \d+ ms/);
  assert.equal(received.length, 1);
  assert.deepEqual(JSON.parse(received[0].body), { text: "NPS 10 on 30cc805f1f0c541d4dcfccef" });
  await shot("10-destination-tested");
});

test("disable it, then delete it after a confirmation", async () => {
  await page.locator("#destination-team-hook").locator('button:has-text("Disable")').click();
  await page.waitForSelector("#result");
  assert.match(await page.locator("#destination-team-hook .state").textContent(), /^disabled/);
  await page.locator("#destination-team-hook").locator('a:has-text("Delete")').click();
  await page.waitForSelector("#confirm-delete");
  await shot("11-destination-delete-confirm");
  await page.click("#confirm-delete");
  await page.waitForSelector("#result");
  assert.match(await page.textContent("#result"), /Deleted team-hook; 0 pending cancelled/);
  assert.equal(await page.locator("#destination-team-hook").count(), 0);
});

test("sign out", async () => {
  await page.click('button:has-text("Sign out")');
  await page.waitForURL(/\/dashboard\/login$/);
  await page.goto(`${worker.url}/dashboard`);
  assert.match(page.url(), /\/dashboard\/login$/);
});
