// Opens the camhub dashboard in headless Chromium (Debian's) and reports, as
// JSON on stdout, what a person would see: which tiles show a real picture,
// which say offline, and whether a click opens a live large view.
//   node dashboard.mjs URL SCREENSHOT.png
import { chromium } from "playwright-core";

const [url, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--autoplay-policy=no-user-gesture-required", "--disable-features=WebRtcHideLocalIpsWithMdns"],
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
  // The large view of every healthy camera: WebRTC (a <video> whose time advances)
  // or MJPEG (an <img>), what it shows, and that closing it lets go.
  const bigs = {};
  for (const t of tiles.filter((t) => !t.failed)) {
    const t0 = Date.now();
    await page.click(`.tile[data-camera="${t.camera}"]`);
    await page.waitForFunction(() => {
      const v = document.getElementById("big-video"), i = document.getElementById("big-img");
      return (!v.hidden && v.readyState >= 2 && v.videoWidth > 0) || (!i.hidden && i.naturalWidth > 0);
    }, null, { timeout: 15000 });
    const firstMs = Date.now() - t0;
    const time0 = await page.$eval("#big-video", (v) => v.currentTime);
    await page.waitForTimeout(1500);
    const big = await page.evaluate(() => {
      const v = document.getElementById("big-video"), i = document.getElementById("big-img");
      let spread = 0;
      const src = !v.hidden ? v : i;
      const w = !v.hidden ? v.videoWidth : i.naturalWidth, h = !v.hidden ? v.videoHeight : i.naturalHeight;
      if (w > 0) {
        const c = document.createElement("canvas");
        c.width = w; c.height = h;
        const g = c.getContext("2d");
        g.drawImage(src, 0, 0);
        const d = g.getImageData(0, Math.floor(h / 8), w, h - Math.floor(h / 8)).data;
        let sum = 0, sq = 0, n = 0;
        for (let k = 0; k < d.length; k += 16) { sum += d[k]; sq += d[k] * d[k]; n++; }
        spread = Math.sqrt(sq / n - (sum / n) ** 2);
      }
      return { mode: document.getElementById("big-mode").textContent, videoShown: !v.hidden, videoWidth: v.videoWidth,
               time: v.currentTime, width: i.naturalWidth, src: i.getAttribute("src"), spread };
    });
    big.firstMs = firstMs;
    big.time0 = time0;
    await page.keyboard.press("Escape");
    big.closedSrc = await page.$eval("#big-img", (i) => i.getAttribute("src"));
    big.closedVideo = await page.$eval("#big-video", (v) => v.srcObject === null);
    bigs[t.camera] = big;
    await page.waitForTimeout(300);
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
  console.log(JSON.stringify({ tiles, bigs, summary, errors, pageText, phone }));
} finally {
  await browser.close();
}
