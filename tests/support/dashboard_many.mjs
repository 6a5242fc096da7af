// Opens the camhub dashboard of many cameras in a small headless Chromium window
// and reports, as JSON on stdout, what the page asked the hub for: which tiles
// were in view, their pictures and age labels, the snapshot requests each
// camera's tile made (and how the hub answered them), then the same after
// scrolling to the bottom of the page.
//   node dashboard_many.mjs URL
import { chromium } from "playwright-core";

const [url] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 800, height: 600 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // Every snapshot request, by camera, with the hub's answer.
  const requests = {};
  page.on("response", (r) => {
    const m = new URL(r.url()).pathname.match(/^\/api\/cameras\/([^/]+)\/snapshot\.jpg$/);
    if (!m) return;
    const cam = decodeURIComponent(m[1]);
    (requests[cam] ||= []).push({ status: r.status(), query: new URL(r.url()).search,
                                  source: r.headers()["x-snapshot-source"], ageMs: Number(r.headers()["x-frame-age-ms"]) });
  });
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForSelector(".tile", { timeout: 15000 });
  // Every tile in view shows a picture and its age.
  const inViewReady = () => {
    const vh = window.innerHeight;
    const tiles = [...document.querySelectorAll(".tile")].filter((t) => {
      const r = t.getBoundingClientRect();
      return r.bottom > 0 && r.top < vh;
    });
    return tiles.length > 0 && tiles.every((t) =>
      t.querySelector(".pic img").naturalWidth > 0 && /\d+ s ago/.test(t.querySelector(".age").textContent));
  };
  await page.waitForFunction(inViewReady, null, { timeout: 20000 });
  const firstMs = Date.now() - t0;
  await page.waitForTimeout(2500); // a refresh round, and the ages count on
  const report = () => page.$$eval(".tile", (ts) => ts.map((t) => {
    const img = t.querySelector(".pic img");
    const r = t.getBoundingClientRect();
    let spread = 0;
    if (img.naturalWidth > 0) {
      const c = document.createElement("canvas");
      c.width = img.naturalWidth; c.height = img.naturalHeight;
      const g = c.getContext("2d");
      g.drawImage(img, 0, 0);
      const d = g.getImageData(0, 0, c.width, c.height).data;
      let sum = 0, sq = 0, n = 0;
      for (let i = 0; i < d.length; i += 16) { sum += d[i]; sq += d[i] * d[i]; n++; }
      spread = Math.sqrt(sq / n - (sum / n) ** 2);
    }
    return { camera: t.dataset.camera, inView: r.bottom > 0 && r.top < window.innerHeight,
             width: img.naturalWidth, spread, age: t.querySelector(".age").textContent };
  }));
  const top = await report();
  const topRequests = JSON.parse(JSON.stringify(requests));
  // Scroll to the bottom at once: the tiles there enter view and fetch.
  const s0 = Date.now();
  await page.evaluate(() => window.scrollTo(0, document.documentElement.scrollHeight));
  await page.waitForFunction(inViewReady, null, { timeout: 20000 });
  const scrolledMs = Date.now() - s0;
  const bottom = await report();
  console.log(JSON.stringify({ errors, firstMs, scrolledMs, top, topRequests, bottom, requests }));
} finally {
  await browser.close();
}
