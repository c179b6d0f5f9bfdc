// The canvas entry: the anywidget front-end of nbexplain.widgets.HeatmapCanvas, bundled into
// nbexplain/static/canvas.js. The image with its heatmap composited on a <canvas>, its caption and
// colour bar, hover readout, brush painting, patch occluder, busy indicator, error overlay.
//
// Model contract (the traits are declared on HeatmapCanvas in nbexplain/widgets/canvas.py):
//   image, image_shape       the picture: RGBA bytes, H×W×4, and [H, W] (no bytes: the map alone)
//   heatmap, heatmap_shape   the map at the method's resolution: float32 bytes, h×w, raw values
//                            (the method's unit), and [h, w]; upsampled here
//   scale                    [low, high]: the raw values at the colour scale's ends; a value is
//                            coloured at (v - low) / (high - low), clipped (lib/scale.js)
//   unit, caption            what a value is; what the map is (class · method · layer), drawn
//                            with the colour bar (legend.js); the readout prints raw values
//   signed, cmap, luts       colouring: cmap "auto" or a name in luts (name -> 256×3 table); a
//                            signed map is weighted by its magnitude, "gray" is a spotlight
//   opacity                  the map's opacity over the picture, 0..1
//   mode, brush_size         "explain" | "brush" | "patch"; brush radius / patch side, in pixels
//   mask_version, mask_bytes a new mask_version reloads the mask from mask_bytes (H×W uint8)
//   busy, display_width      the busy indicator; the CSS width in pixels
//   error                    shown over the canvas; the only trait the browser writes ("" when
//                            the user dismisses it)
// Custom messages, browser -> kernel (HeatmapCanvas._handle_custom_msg); x, y are input pixels:
//   {type: "stroke", points: [[x, y], ...], size, erase, final}  brush input, at most one per
//                            frame (lib/coalesce.js), final: true ends the stroke; each message's
//                            points are a polyline painted as lib/raster.js does
//   {type: "patch", x, y, size}, then {type: "patch", x: null} when the pointer leaves or the
//                            mode changes
//   {type: "pick", x, y}     a click in explain mode
//   {type: "rendered", t_event, t_paint, latency_ms}  a heatmap painted after the user's input
//                            (also dispatched on the element as the DOM event "nbx-rendered")
import { CanvasView } from "./view.js";

/** anywidget entry point. */
export function render({ model, el }) {
  const view = new CanvasView(model, el);
  return () => view.destroy();
}

export default { render };
