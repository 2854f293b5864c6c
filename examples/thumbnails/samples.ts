/** Sample pictures for the pipeline, drawn in code so that the example needs no files. */
import { access, mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { encodePng, type Image } from "./png.js";

type Paint = (x: number, y: number, width: number, height: number) => [number, number, number];

const SAMPLES: Array<{ name: string; width: number; height: number; paint: Paint }> = [
  { name: "sunset.png", width: 1600, height: 1000, paint: sunset },
  { name: "mandelbrot.png", width: 960, height: 720, paint: mandelbrot },
  { name: "checkerboard.png", width: 1024, height: 1024, paint: checkerboard },
];

/** Writes the sample pictures into `dir` (those not there yet) and returns their paths. */
export async function writeSamples(dir: string): Promise<string[]> {
  await mkdir(dir, { recursive: true });
  const paths: string[] = [];
  for (const sample of SAMPLES) {
    const path = join(dir, sample.name);
    paths.push(path);
    if (await exists(path)) continue;
    await writeFile(path, encodePng(draw(sample.width, sample.height, sample.paint)));
  }
  return paths;
}

function draw(width: number, height: number, paint: Paint): Image {
  const rgb = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) rgb.set(paint(x, y, width, height), (y * width + x) * 3);
  }
  return { width, height, rgb };
}

function sunset(x: number, y: number, width: number, height: number): [number, number, number] {
  const horizon = height * 0.62;
  const sun = Math.hypot(x - width * 0.5, y - horizon) < height * 0.16;
  if (y < horizon) {
    const t = y / horizon;
    return sun ? [255, 236, 150] : [60 + 195 * t, 30 + 110 * t, 110 - 60 * t];
  }
  const t = (y - horizon) / (height - horizon);
  const glint = sun || Math.abs(x - width * 0.5) < height * 0.16 * (1 - t);
  const wave = Math.sin(y * 0.35 + Math.sin(x * 0.02) * 2) > 0.6 ? 25 : 0;
  return glint && wave > 0 ? [250, 200, 120] : [20 + wave, 40 + wave, 90 - 50 * t + wave];
}

function mandelbrot(x: number, y: number, width: number, height: number): [number, number, number] {
  const cx = -2.2 + (x / width) * 3.2;
  const cy = -1.2 + (y / height) * 2.4;
  let zx = 0;
  let zy = 0;
  let n = 0;
  for (; n < 60 && zx * zx + zy * zy < 4; n++)
    [zx, zy] = [zx * zx - zy * zy + cx, 2 * zx * zy + cy];
  if (n === 60) return [0, 0, 0];
  return [(n * 9) % 256, (n * 5 + 40) % 256, 160 + ((n * 3) % 96)];
}

function checkerboard(
  x: number,
  y: number,
  width: number,
  height: number,
): [number, number, number] {
  const dark = (Math.floor(x / 64) + Math.floor(y / 64)) % 2 === 1;
  const r = Math.round((255 * x) / width);
  const b = Math.round((255 * y) / height);
  return dark ? [r >> 2, 40, b >> 2] : [r, 220, b];
}

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}
