// What the map on the canvas says, drawn from the model's traits: the caption above the picture
// (`caption`: the class first, in bold, then the method and layer) and, under it, the colour bar
// of the colormap that paints, labelled with the raw values at its ends and middle (`scale`; zero
// on a signed scale) and what a value is (`unit`). Hidden while there is no map.
import { formatG } from "../lib/scale.js";
import { SPOTLIGHT } from "../lib/lut.js";

/** A new element `tag` of class `className`, appended to `parent` when given. */
export function make(tag, className, parent) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (parent) parent.appendChild(node);
  return node;
}

/** What the colours mean, in words, for the line under the colour bar. */
export function legendText(unit, signed, cmap) {
  const parts = unit ? [unit] : [];
  if (cmap === SPOTLIGHT) parts.push("spotlight: the photo darkens where the map is low");
  else if (signed) parts.push("signed: zero shows the photo");
  return parts.join(" · ");
}

export class Legend {
  /** The caption goes before `stage` in `root`; the colour bar after it. */
  constructor(root, stage) {
    this.caption = make("div", "nbx-caption");
    root.insertBefore(this.caption, stage);
    this.node = make("div", "nbx-legend");
    stage.after(this.node);
    this.bar = make("canvas", "nbx-colorbar", this.node);
    this.bar.width = 256;
    this.bar.height = 1;
    const ticks = make("div", "nbx-ticks", this.node);
    this.low = make("span", "nbx-low", ticks);
    this.middle = make("span", "nbx-mid", ticks);
    this.high = make("span", "nbx-high", ticks);
    this.unit = make("div", "nbx-unit", this.node);
  }

  /** Show `caption`, and the colour bar of `lut` (256×3) over `scale` = [low, high]; a null
   * `lut` (no map) hides both. */
  show({ caption, lut, name, scale, signed, unit }) {
    this.caption.replaceChildren();
    const text = lut ? caption || "" : "";
    const cut = text.indexOf(" · ");
    make("b", "", this.caption).textContent = cut < 0 ? text : text.slice(0, cut);
    if (cut >= 0) this.caption.append(text.slice(cut));
    this.caption.title = text;
    this.caption.style.display = text ? "" : "none";
    this.node.style.display = lut ? "" : "none";
    if (!lut) return;
    const g = this.bar.getContext("2d");
    if (g) {
      const ramp = g.createImageData(256, 1);
      for (let i = 0; i < 256; i++) {
        ramp.data.set([lut[3 * i], lut[3 * i + 1], lut[3 * i + 2], 255], 4 * i);
      }
      g.putImageData(ramp, 0, 0);
    }
    this.bar.dataset.cmap = name;
    const [low, high] = scale;
    this.low.textContent = formatG(low, 3);
    this.high.textContent = formatG(high, 3);
    this.middle.textContent = formatG((low + high) / 2, 3); // zero on a signed scale
    this.unit.textContent = legendText(unit, signed, name);
  }
}
