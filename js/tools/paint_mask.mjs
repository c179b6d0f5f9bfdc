// Paints stroke messages with the front-end's rasterizer and prints the mask (for the Python
// test that checks the kernel paints the same pixels). stdin: {"width", "height", "messages"}
// where messages are the custom 'stroke' messages; stdout: the mask as a JSON list.
import { readFileSync } from "node:fs";
import { paintStroke } from "../src/lib/raster.js";

const spec = JSON.parse(readFileSync(0, "utf8"));
const mask = new Uint8Array(spec.width * spec.height);
for (const m of spec.messages) paintStroke(mask, spec.width, spec.height, m.points, m.size, m.erase ? 0 : 255);
process.stdout.write(JSON.stringify(Array.from(mask)));
