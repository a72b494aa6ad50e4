"""The report's stylesheet, inline in the page: system fonts, readable from a phone's width
(390 px) to a desktop's, light and dark colour schemes (charts are inverted in dark mode:
their backgrounds are transparent), and a print layout."""

CSS = """
:root {
  color-scheme: light dark;
  --bg: #f6f7f9; --card: #ffffff; --ink: #1f2933; --muted: #5f6b7a; --line: #e1e5ea;
  --accent: #2f6fcf; --good: #2b8a3e; --bad: #c92a2a; --warn-bg: #fff4e0; --warn: #8a5300;
}
@media (prefers-color-scheme: dark) {
  :root {
    --bg: #111418; --card: #1a1f25; --ink: #e6e9ed; --muted: #9aa5b1; --line: #2c333b;
    --accent: #74a7f0; --good: #69db7c; --bad: #ff8787; --warn-bg: #3a2a10; --warn: #ffc46b;
  }
  figure.chart svg { filter: invert(1) hue-rotate(180deg); }
}
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body {
  margin: 0; background: var(--bg); color: var(--ink);
  font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial,
    "Noto Sans", "Liberation Sans", sans-serif;
}
.page { max-width: 1080px; margin: 0 auto; padding: 24px 16px 40px; }
header.top { padding: 8px 4px 20px; }
.kicker { margin: 0; color: var(--muted); font-size: .9rem; letter-spacing: .02em; }
h1 { margin: 4px 0 2px; font-size: clamp(2.1rem, 9vw, 3.4rem); line-height: 1.1;
  font-weight: 700; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
h1 .what { display: block; font-size: 1rem; font-weight: 500; color: var(--muted);
  letter-spacing: .01em; margin-top: 6px; }
.sub { margin: 6px 0 0; color: var(--ink); overflow-wrap: anywhere; }
.badges { margin: 12px 0 0; display: flex; flex-wrap: wrap; gap: 8px; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 999px; font-size: .85rem;
  border: 1px solid var(--line); background: var(--card); color: var(--muted); }
.badge.pass { color: var(--good); border-color: currentColor; }
.badge.fail { color: var(--bad); border-color: currentColor; font-weight: 600; }
main { display: grid; grid-template-columns: minmax(0, 1fr); gap: 18px; grid-auto-flow: dense; }
@media (min-width: 1000px) {
  main { grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); }
  section.wide { grid-column: 1 / -1; }
}
.facts { display: grid; grid-template-columns: repeat(auto-fill, minmax(165px, 1fr));
  gap: 10px; margin: 0; }
.facts > div { border: 1px solid var(--line); border-radius: 8px; padding: 8px 12px;
  min-width: 0; }
.facts dt { color: var(--muted); font-size: .8rem; letter-spacing: .02em; }
.facts dd { margin: 2px 0 0; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.meta { color: var(--muted); font-size: .88rem; }
.source { overflow-wrap: anywhere; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 12px;
  padding: 18px 20px; margin: 0; min-width: 0; }
h2 { margin: 0 0 12px; font-size: 1.2rem; }
.lead { font-size: 1.15rem; margin: 0 0 8px; }
.note { color: var(--muted); font-size: .9rem; margin: 8px 0 0; }
.scroll { overflow-x: auto; max-width: 100%; -webkit-overflow-scrolling: touch; }
table { border-collapse: collapse; font-size: .92rem; font-variant-numeric: tabular-nums; }
.scroll > table { min-width: 100%; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left;
  vertical-align: top; }
thead th { color: var(--muted); font-weight: 600; white-space: nowrap; }
td.num, th.num { text-align: right; white-space: nowrap; }
table.fields th { color: var(--muted); font-weight: 500; white-space: nowrap; width: 1%; }
table.fields td { overflow-wrap: anywhere; }
figure.chart { margin: 0 0 12px; }
figure.chart svg { display: block; width: 100%; height: auto; max-width: 600px; }
figcaption { color: var(--muted); font-size: .9rem; margin-top: 4px; }
details { margin-top: 8px; }
summary { cursor: pointer; color: var(--accent); }
.warnings { background: var(--warn-bg); color: var(--warn); border-radius: 8px;
  padding: 10px 14px; margin: 12px 0 0; }
.warnings ul { margin: 4px 0 0; padding-left: 20px; }
.warnings li { overflow-wrap: anywhere; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .9em; }
footer { color: var(--muted); font-size: .85rem; padding: 18px 4px 0; }
@media (max-width: 600px) {
  .page { padding: 16px 10px 32px; }
  section { padding: 14px 12px; border-radius: 10px; }
  th, td { padding: 5px 7px; }
  table.fields th { white-space: normal; width: 30%; }
  .facts { grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 8px; }
}
@media print {
  :root { color-scheme: light; --bg: #fff; --card: #fff; --ink: #000; --muted: #444;
    --line: #ccc; }
  figure.chart svg { filter: none; }
  body { font-size: 11pt; }
  .page { max-width: none; padding: 0; }
  main { display: block; }
  section { border: 0; border-top: 1px solid var(--line); border-radius: 0; padding: 10px 0;
    break-inside: avoid; }
  figure.chart { break-inside: avoid; }
  .scroll { overflow: visible; }
  details > summary { display: none; }
}
"""
