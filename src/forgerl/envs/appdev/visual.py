"""The JavaScript that measures what a user can see, run in the page by `ChromiumSession`.

`VISIBLE_JS` decides whether an element counts as seen by a user:
- Chromium's `checkVisibility` with opacity and visibility (no `display:none`, `visibility:hidden`
  or `opacity:0` on it or an ancestor, no skipped `content-visibility`);
- a box of non-zero width and height, also after clipping by every ancestor whose overflow is
  hidden/clip (a zero-height `overflow:hidden` wrapper hides its content);
- text not drawn in a fully transparent colour (form controls excepted);
- the box inside the page's scrollable area: not left of x=0 or above y=0, and not right of the
  document's width. When the page's overflow is hidden (no scrolling), the area is the viewport.

The visual checks (rubric.VISUAL_CHECKS) each return {"passed": bool, ...numbers, "offenders":
[short descriptions]}:
- no_horizontal_scroll: document.documentElement.scrollWidth <= window.innerWidth (+1 px).
- no_overlap: no two visible interactive elements intersect by more than 1 px in both directions
  (a pair where one contains the other, e.g. a button inside a link, is not an overlap).
- contrast_aa: every visible element with its own non-blank text has contrast >= 4.5 (>= 3 for
  large text: >= 24 px, or >= 18.66 px bold) against its effective background: the background
  colours of it and its ancestors composited from the root (white canvas) up. Conservative where
  the background is not a plain colour: a gradient counts as its worst colour stop, and a
  background image (url) cannot be measured, so text over it fails unless an opaque plain colour
  is painted over the image by a nearer element (an element's own colour is painted under its image).
- on_screen: every selector in `selectors` has at least one visible element (see above).
"""

from __future__ import annotations

VISIBLE_JS = r"""
const __fr = {
  area() {
    const de = document.documentElement, body = document.body;
    const hx = ['hidden', 'clip'];
    const cs = getComputedStyle(de), bs = body ? getComputedStyle(body) : cs;
    const ox = cs.overflowX !== 'visible' ? cs.overflowX : bs.overflowX;
    const oy = cs.overflowY !== 'visible' ? cs.overflowY : bs.overflowY;
    return {w: hx.includes(ox) ? window.innerWidth : Math.max(de.scrollWidth, window.innerWidth),
            h: hx.includes(oy) ? window.innerHeight : Math.max(de.scrollHeight, window.innerHeight)};
  },
  box(el) {
    const r = el.getBoundingClientRect();
    let l = r.left, t = r.top, rt = r.right, b = r.bottom;
    for (let a = el.parentElement; a && a !== document.documentElement; a = a.parentElement) {
      const s = getComputedStyle(a);
      const clipX = ['hidden', 'clip'].includes(s.overflowX), clipY = ['hidden', 'clip'].includes(s.overflowY);
      if (!clipX && !clipY) continue;
      const ar = a.getBoundingClientRect();
      if (clipX) { l = Math.max(l, ar.left); rt = Math.min(rt, ar.right); }
      if (clipY) { t = Math.max(t, ar.top); b = Math.min(b, ar.bottom); }
    }
    return {x: l + window.scrollX, y: t + window.scrollY, w: rt - l, h: b - t};
  },
  visible(el) {
    if (!el.isConnected) return false;
    if (el.checkVisibility && !el.checkVisibility({opacityProperty: true, visibilityProperty: true,
        contentVisibilityAuto: true})) return false;
    const s = getComputedStyle(el);
    if (s.visibility !== 'visible') return false;
    if (/rgba\([^)]*,\s*0\)$/.test(s.color) && !['INPUT', 'SELECT', 'TEXTAREA'].includes(el.tagName)) return false;
    const b = __fr.box(el);
    if (!(b.w > 0 && b.h > 0)) return false;
    const a = __fr.area();
    return b.x >= -1 && b.y >= -1 && b.x + b.w <= a.w + 1;
  },
  text(el) { return (el.innerText || el.textContent || '').replace(/\s+/g, ' ').trim(); },
  describe(el) {
    let d = el.tagName.toLowerCase();
    if (el.id) d += '#' + el.id;
    if (el.className && typeof el.className === 'string') d += '.' + el.className.trim().split(/\s+/).join('.');
    return d.slice(0, 80);
  },
};
"""

MEASURE_JS = VISIBLE_JS + r"""
const __parse = (c) => {
  const m = c.match(/rgba?\(([^)]+)\)/);
  if (!m) return null;
  const p = m[1].split(/[ ,\/]+/).filter(Boolean).map(parseFloat);
  return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1};
};
const __over = (top, under) => ({r: top.r * top.a + under.r * (1 - top.a), g: top.g * top.a + under.g * (1 - top.a),
                                 b: top.b * top.a + under.b * (1 - top.a), a: 1});
const __lum = (c) => {
  const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
  return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b);
};
const __ratio = (a, b) => { const x = __lum(a), y = __lum(b); return (Math.max(x, y) + 0.05) / (Math.min(x, y) + 0.05); };
const __backgrounds = (el) => {
  // candidate effective backgrounds, composited from the root up; null = unmeasurable (image)
  const chain = [];
  for (let a = el; a; a = a.parentElement) chain.unshift(a);
  let cands = [{r: 255, g: 255, b: 255, a: 1}];
  for (const a of chain) {
    const s = getComputedStyle(a);
    const bg = __parse(s.backgroundColor);  // painted first, under the element's image
    if (bg && bg.a > 0) {
      if (bg.a >= 1) cands = [bg];
      else if (cands) cands = cands.map((u) => __over(bg, u));
    }
    const img = s.backgroundImage;
    if (img && img !== 'none') {
      const stops = (img.match(/rgba?\([^)]+\)/g) || []).map(__parse).filter(Boolean);
      if (img.includes('url(') || !stops.length) cands = null;
      else cands = (cands || [{r: 255, g: 255, b: 255, a: 1}]).flatMap((u) => stops.map((t) => __over(t, u)));
    }
  }
  return cands;
};
const __checks = {
  no_horizontal_scroll() {
    const w = document.documentElement.scrollWidth, vw = window.innerWidth;
    return {passed: w <= vw + 1, document_width: w, viewport_width: vw};
  },
  no_overlap() {
    const sel = 'input:not([type=hidden]), button, select, textarea, a[href], [role=button]';
    const els = [...document.querySelectorAll(sel)].filter(__fr.visible);
    const off = [];
    for (let i = 0; i < els.length; i++) for (let j = i + 1; j < els.length; j++) {
      const a = els[i], b = els[j];
      if (a.contains(b) || b.contains(a)) continue;
      const p = a.getBoundingClientRect(), q = b.getBoundingClientRect();
      const w = Math.min(p.right, q.right) - Math.max(p.left, q.left);
      const h = Math.min(p.bottom, q.bottom) - Math.max(p.top, q.top);
      if (w > 1 && h > 1) off.push(__fr.describe(a) + ' overlaps ' + __fr.describe(b));
    }
    return {passed: off.length === 0, interactive: els.length, offenders: off.slice(0, 10)};
  },
  contrast_aa() {
    const off = [];
    let n = 0, worst = null;
    for (const el of document.body ? document.body.querySelectorAll('*') : []) {
      const own = [...el.childNodes].some((c) => c.nodeType === 3 && c.textContent.trim());
      if (!own || !__fr.visible(el) || ['SCRIPT', 'STYLE', 'NOSCRIPT'].includes(el.tagName)) continue;
      const s = getComputedStyle(el);
      const size = parseFloat(s.fontSize), bold = parseInt(s.fontWeight) >= 700;
      const need = size >= 24 || (size >= 18.66 && bold) ? 3 : 4.5;
      const fg = __parse(s.color);
      const bgs = __backgrounds(el);
      n++;
      if (!fg || !bgs) { off.push(__fr.describe(el) + ': text over a background image (unmeasurable)'); continue; }
      const r = Math.min(...bgs.map((bg) => __ratio(__over(fg, bg), bg)));
      if (worst === null || r < worst) worst = r;
      if (r < need) off.push(__fr.describe(el) + ': contrast ' + r.toFixed(2) + ' < ' + need);
    }
    return {passed: off.length === 0, texts: n, worst_ratio: worst === null ? null : Math.round(worst * 100) / 100,
            offenders: off.slice(0, 10)};
  },
  on_screen(selectors) {
    const missing = selectors.filter((s) => ![...document.querySelectorAll(s)].some(__fr.visible));
    return {passed: missing.length === 0, checked: selectors.length, offenders: missing};
  },
};
"""


def measure_script(check: str) -> str:
    """A function expression for Playwright's `page.evaluate(script, selectors)`."""
    return f"(selectors) => {{ {MEASURE_JS}\n return __checks[{check!r}](selectors || []); }}"


def visible_texts_script() -> str:
    return (f"(sel) => {{ {VISIBLE_JS}\n return [...document.querySelectorAll(sel)]"
            ".filter(__fr.visible).map(__fr.text); }")


def visible_value_script() -> str:
    return (f"(sel) => {{ {VISIBLE_JS}\n const el = [...document.querySelectorAll(sel)].find(__fr.visible);"
            " return el ? {value: String(el.value ?? ''), tag: el.tagName} : null; }")
