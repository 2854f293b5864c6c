/**
 * Just enough PNG for the example, with node:zlib and no dependency: decodes 8-bit greyscale,
 * RGB and RGBA images (not interlaced), and encodes RGB.
 */
import { crc32, deflateSync, inflateSync } from "node:zlib";

/** An image as rows of RGB pixels, 3 bytes each, top row first. */
export interface Image {
  width: number;
  height: number;
  rgb: Uint8Array;
}

/** The file is not a PNG this codec reads: another attempt would not change that. */
export class PngError extends Error {
  override readonly name = "PngError";
}

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
/** Bytes per pixel of each colour type read: greyscale, RGB, RGBA. */
const CHANNELS = new Map([
  [0, 1],
  [2, 3],
  [6, 4],
]);

export function decodePng(file: Uint8Array): Image {
  const data = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (data.length < 8 || !data.subarray(0, 8).equals(SIGNATURE)) {
    throw new PngError("not a PNG file (no PNG signature)");
  }
  let header: { width: number; height: number; channels: number } | null = null;
  const compressed: Buffer[] = [];
  let offset = 8;
  while (offset + 8 <= data.length) {
    const length = data.readUInt32BE(offset);
    const type = data.toString("latin1", offset + 4, offset + 8);
    const body = data.subarray(offset + 8, offset + 8 + length);
    if (body.length < length) throw new PngError(`the ${type} chunk is cut short`);
    offset += 12 + length;
    if (type === "IHDR") {
      const [depth, colour, , , interlace] = body.subarray(8, 13);
      const channels = CHANNELS.get(colour ?? -1);
      if (depth !== 8 || channels === undefined || interlace !== 0) {
        throw new PngError(
          `unsupported PNG (bit depth ${depth}, colour type ${colour}, interlace ${interlace}): ` +
            "this example reads 8-bit greyscale, RGB and RGBA, not interlaced",
        );
      }
      header = { width: body.readUInt32BE(0), height: body.readUInt32BE(4), channels };
    } else if (type === "IDAT") {
      compressed.push(body);
    } else if (type === "IEND") {
      break;
    }
  }
  if (!header) throw new PngError("no IHDR chunk");
  const { width, height, channels } = header;
  let raw: Buffer;
  try {
    raw = inflateSync(Buffer.concat(compressed));
  } catch (error) {
    throw new PngError(`the image data is corrupt: ${(error as Error).message}`);
  }
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new PngError("the image data is cut short");
  const pixels = unfilter(raw, height, stride, channels);
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) rgb[i * 3 + c] = pixels[i * channels + (channels < 3 ? 0 : c)] ?? 0;
  }
  return { width, height, rgb };
}

/** Undoes the per-row filters (PNG specification, section 9). */
function unfilter(raw: Buffer, height: number, stride: number, bpp: number): Uint8Array {
  const out = new Uint8Array(height * stride);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (stride + 1)];
    const line = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    const row = y * stride;
    const up = row - stride;
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? (out[row + x - bpp] ?? 0) : 0;
      const b = y > 0 ? (out[up + x] ?? 0) : 0;
      const c = x >= bpp && y > 0 ? (out[up + x - bpp] ?? 0) : 0;
      const value = line[x] ?? 0;
      let predicted: number;
      switch (filter) {
        case 0:
          predicted = 0;
          break;
        case 1:
          predicted = a;
          break;
        case 2:
          predicted = b;
          break;
        case 3:
          predicted = (a + b) >> 1;
          break;
        case 4:
          predicted = paeth(a, b, c);
          break;
        default:
          throw new PngError(`row ${y} has an unknown filter type ${filter}`);
      }
      out[row + x] = (value + predicted) & 0xff;
    }
  }
  return out;
}

function paeth(a: number, b: number, c: number): number {
  const p = a + b - c;
  const pa = Math.abs(p - a);
  const pb = Math.abs(p - b);
  const pc = Math.abs(p - c);
  return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
}

/** An RGB PNG; every row filtered with "up", which suits smooth images well enough. */
export function encodePng(image: Image): Buffer {
  const { width, height, rgb } = image;
  const stride = width * 3;
  const raw = Buffer.alloc(height * (stride + 1));
  for (let y = 0; y < height; y++) {
    raw[y * (stride + 1)] = 2;
    for (let x = 0; x < stride; x++) {
      const above = y > 0 ? (rgb[(y - 1) * stride + x] ?? 0) : 0;
      raw[y * (stride + 1) + 1 + x] = ((rgb[y * stride + x] ?? 0) - above) & 0xff;
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header.set([8, 2, 0, 0, 0], 8);
  return Buffer.concat([
    SIGNATURE,
    chunk("IHDR", header),
    chunk("IDAT", deflateSync(raw)),
    chunk("IEND", Buffer.alloc(0)),
  ]);
}

function chunk(type: string, body: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(body.length, 0);
  head.write(type, 4, "latin1");
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body, crc32(head.subarray(4))), 0);
  return Buffer.concat([head, body, crc]);
}
