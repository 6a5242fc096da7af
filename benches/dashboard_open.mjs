// P10: opens the camhub dashboard (1600x1000, headless Chromium) and keeps it
// open for SECONDS; prints JSON: how long until every tile in view had a
// picture, how many tiles were in view and painted, then closes the page.
//   node benches/dashboard_open.mjs URL SECONDS
// (playwright-core comes from tests/support/node_modules: run with NODE_PATH set.)
import { createRequire } from "module";
const require = createRequire(process.env.NODE_PATH + "/");
const { chromium } = require("playwright-core");

const [url, seconds] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1600, height: 1000 } });
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForSelector(".tile", { timeout: 15000 });
  const state = () => page.$$eval(".tile", (ts) => {
    const vh = window.innerHeight;
    const inView = ts.filter((t) => { const r = t.getBoundingClientRect(); return r.bottom > 0 && r.top < vh; });
    const painted = inView.filter((t) => t.querySelector(".pic img").naturalWidth > 0);
    return { tiles: ts.length, inView: inView.length, painted: painted.length };
  });
  let allMs = null;
  let s = await state();
  while (Date.now() - t0 < 15000) {
    s = await state();
    if (s.inView > 0 && s.painted === s.inView) { allMs = Date.now() - t0; break; }
    await page.waitForTimeout(50);
  }
  console.error("READY");
  await page.waitForTimeout(Number(seconds) * 1000);
  const end = await state();
  console.log(JSON.stringify({ allMs, first: s, end }));
} finally {
  await browser.close();
}
