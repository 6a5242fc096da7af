// Opens the camhub dashboard in headless Chromium (Debian's) and reports, as
// JSON on stdout, what a person would see: which tiles show a real picture,
// which say offline, and whether a click opens a live large view.
//   node dashboard.mjs URL SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 760 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.goto(url);
  await page.waitForSelector(".tile", { timeout: 15000 });
  // Wait until every streaming tile shows a decoded picture.
  await page.waitForFunction(() => {
    const tiles = [...document.querySelectorAll(".tile")];
    return tiles.length > 0 && tiles.every((t) =>
      t.classList.contains("failed") || (t.querySelector(".pic img").naturalWidth > 0 && t.querySelector(".state").textContent === "streaming"));
  }, null, { timeout: 20000 });
  await page.waitForTimeout(2500); // two polls, so fps and bitrate are shown
  const tiles = await page.$$eval(".tile", (ts) => ts.map((t) => {
    const img = t.querySelector(".pic img");
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
    return {
      camera: t.dataset.camera,
      state: t.querySelector(".state").textContent,
      failed: t.classList.contains("failed"),
      offlineShown: getComputedStyle(t.querySelector(".offline")).display !== "none",
      offlineText: t.querySelector(".offline").textContent,
      facts: t.querySelector(".facts").textContent,
      width: img.naturalWidth,
      spread,
    };
  }));
  await page.screenshot({ path: shot });
  const healthy = tiles.find((t) => !t.failed);
  let big = null;
  if (healthy) {
    await page.click(`.tile[data-camera="${healthy.camera}"]`);
    await page.waitForFunction(() => document.getElementById("big-img").naturalWidth > 0, null, { timeout: 15000 });
    big = await page.$eval("#big-img", (i) => ({ width: i.naturalWidth, src: i.getAttribute("src") }));
    await page.keyboard.press("Escape");
    big.closedSrc = await page.$eval("#big-img", (i) => i.getAttribute("src"));
  }
  // A phone: one column of tiles, nothing wider than the screen.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(300);
  const phone = await page.evaluate(() => {
    const xs = new Set([...document.querySelectorAll(".tile")].map((t) => Math.round(t.getBoundingClientRect().left)));
    const widest = Math.max(...[...document.querySelectorAll(".tile")].map((t) => t.getBoundingClientRect().right));
    return { columns: xs.size, overflow: document.documentElement.scrollWidth > window.innerWidth, widest };
  });
  const summary = await page.$eval("#summary", (s) => s.textContent);
  const pageText = await page.evaluate(() => document.documentElement.outerHTML + document.body.innerText);
  console.log(JSON.stringify({ tiles, big, summary, errors, pageText, phone }));
} finally {
  await browser.close();
}
