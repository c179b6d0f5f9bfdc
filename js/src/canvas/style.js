// The canvas's stylesheet (one <style> inside the widget; JupyterLab's theme colours for text).
export const STYLE = `
.nbx-canvas { position: relative; display: inline-block; max-width: 100%; line-height: 0;
  font: 12px/1.4 system-ui, -apple-system, "Segoe UI", sans-serif; user-select: none; }
.nbx-canvas .nbx-stage { position: relative; line-height: 0; }
.nbx-canvas canvas.nbx-main { display: block; max-width: 100%; height: auto; background: #222; }
.nbx-canvas canvas.nbx-overlay { position: absolute; left: 0; top: 0; width: 100%; height: 100%;
  pointer-events: none; }
.nbx-canvas .nbx-caption { line-height: 1.35; padding: 0 0 3px; color: var(--jp-ui-font-color1, #222);
  white-space: normal; overflow-wrap: anywhere; }
.nbx-canvas .nbx-caption b { font-weight: 600; font-size: 13px; }
.nbx-canvas .nbx-legend { line-height: 1.3; padding-top: 4px; color: var(--jp-ui-font-color1, #333);
  font-variant-numeric: tabular-nums; }
.nbx-canvas canvas.nbx-colorbar { display: block; width: 100%; height: 10px; image-rendering: pixelated;
  outline: 1px solid rgba(0,0,0,0.25); }
.nbx-canvas .nbx-ticks { display: flex; justify-content: space-between; }
.nbx-canvas .nbx-ticks span { flex: 1; }
.nbx-canvas .nbx-ticks .nbx-mid { text-align: center; }
.nbx-canvas .nbx-ticks .nbx-high { text-align: right; }
.nbx-canvas .nbx-unit { color: var(--jp-ui-font-color2, #555); text-align: center; white-space: normal; }
.nbx-canvas .nbx-readout { line-height: 18px; height: 18px; color: var(--jp-ui-font-color1, #333);
  font-variant-numeric: tabular-nums; white-space: nowrap; overflow: hidden; }
.nbx-canvas .nbx-busy { position: absolute; top: 6px; right: 6px; width: 14px; height: 14px;
  border-radius: 50%; border: 2px solid rgba(255,255,255,0.35); border-top-color: #fff;
  box-shadow: 0 0 2px rgba(0,0,0,0.6); opacity: 0; transition: opacity 120ms;
  animation: nbx-spin 0.8s linear infinite; pointer-events: none; }
.nbx-canvas .nbx-busy.nbx-on { opacity: 1; }
@keyframes nbx-spin { to { transform: rotate(360deg); } }
.nbx-canvas .nbx-error { position: absolute; left: 0; right: 0; bottom: 0; max-height: 70%;
  overflow: auto; display: none; background: rgba(150, 20, 20, 0.92); color: #fff;
  line-height: 1.35; padding: 6px 26px 6px 8px; white-space: pre-wrap; word-break: break-word; }
.nbx-canvas .nbx-error.nbx-on { display: block; }
.nbx-canvas .nbx-error button { position: absolute; top: 2px; right: 4px; border: 0;
  background: transparent; color: #fff; font-size: 16px; cursor: pointer; line-height: 1; }
`;
