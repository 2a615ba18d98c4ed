/**
 * The page every /ui address gets: a skeleton the script fills in. The script's first paint is the skeleton itself
 * (header and "loading"), so a slow API never shows a blank page.
 */
export function consoleHtml (): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>pgmesh console</title>
<link rel="stylesheet" href="/ui/app.css">
<script type="module" src="/ui/app.js"></script>
</head>
<body>
<a class="skip" href="#main">Skip to content</a>
<header>
  <span class="brand">pgmesh</span>
  <nav aria-label="Main"><a href="#/">Cluster</a> <a href="#/databases">Databases</a></nav>
  <span id="talking-to" aria-live="polite"></span>
  <span id="live" class="muted" aria-live="polite"></span>
</header>
<div id="banner" role="alert" hidden></div>
<main id="main" tabindex="-1"><p class="muted">Loading…</p></main>
<dialog id="confirm" aria-labelledby="confirm-title">
  <form method="dialog">
    <h2 id="confirm-title">Are you sure?</h2>
    <p id="confirm-text"></p>
    <div id="confirm-extra"></div>
    <menu><button value="cancel" type="submit">Cancel</button> <button value="ok" type="submit" class="danger" id="confirm-ok">Confirm</button></menu>
  </form>
</dialog>
</body>
</html>
`
}

/** Light by default, dark when the system asks (prefers-color-scheme); contrast kept at WCAG AA for text. */
export const CONSOLE_CSS = `:root{--bg:#fff;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--card:#f6f8fa;--accent:#0550ae;--ok:#116329;--warn:#7d4e00;--bad:#a40e26;--focus:#0969da}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--muted:#9198a1;--line:#30363d;--card:#161b22;--accent:#58a6ff;--ok:#3fb950;--warn:#d29922;--bad:#f85149;--focus:#58a6ff}}
*{box-sizing:border-box}body{margin:0;font:14px/1.45 system-ui,sans-serif;background:var(--bg);color:var(--fg)}
header{display:flex;gap:1.2rem;align-items:center;padding:.6rem 1rem;border-bottom:1px solid var(--line);flex-wrap:wrap}
.brand{font-weight:700}nav a{margin-right:.8rem}a{color:var(--accent)}
main{padding:1rem;max-width:1200px}main:focus{outline:none}tbody th{white-space:nowrap}td code{word-break:break-all}h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.1rem;margin:1.4rem 0 .5rem}
table{border-collapse:collapse;width:100%;margin:.4rem 0}th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{font-weight:600;color:var(--muted)}code,pre,textarea{font:12.5px/1.4 ui-monospace,monospace}
pre{background:var(--card);padding:.6rem;overflow:auto;border:1px solid var(--line);border-radius:6px}
.muted{color:var(--muted)}.state-healthy,.state-available,.state-completed,.state-replicating{color:var(--ok)}
.state-degraded,.state-creating,.state-modifying,.state-running,.state-pending,.state-canceling,.state-backing_up,.state-restarting{color:var(--warn)}
.state-unreachable,.state-failed,.state-error,.state-stopped,.state-unknown,.state-canceled,.state-down,.state-deleting{color:var(--bad)}
#banner{background:var(--warn);color:var(--bg);padding:.6rem 1rem;font-weight:600}
.nodes{display:flex;gap:1rem;flex-wrap:wrap}.node{border:1px solid var(--line);border-radius:8px;padding:.6rem;min-width:260px;background:var(--card)}
.inst{border:1px solid var(--line);border-radius:6px;padding:.4rem;margin:.4rem 0;background:var(--bg)}.inst.primary{border:2px solid var(--accent)}
.role{font-weight:700;text-transform:uppercase;font-size:.75rem;letter-spacing:.04em}
button{font:inherit;padding:.25rem .7rem;border-radius:6px;border:1px solid var(--line);background:var(--card);color:var(--fg);cursor:pointer}
button.danger{border-color:var(--bad);color:var(--bad)}button:disabled{opacity:.5;cursor:default}
:focus-visible{outline:3px solid var(--focus);outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:var(--bg);padding:.3rem}
textarea{width:100%;min-height:18rem;background:var(--bg);color:var(--fg);border:1px solid var(--line);border-radius:6px;padding:.5rem}
input,select{font:inherit;background:var(--bg);color:var(--fg);border:1px solid var(--line);border-radius:4px;padding:.2rem .4rem}
.field-errors{color:var(--bad);margin:.3rem 0;padding-left:1.2rem}.cols{display:grid;grid-template-columns:minmax(0,2fr) minmax(0,1fr);gap:1rem}
.actions{display:flex;gap:.4rem;flex-wrap:wrap;margin:.3rem 0}dialog{border:1px solid var(--line);border-radius:8px;background:var(--bg);color:var(--fg);max-width:32rem}
dialog::backdrop{background:#0008}menu{display:flex;gap:.5rem;justify-content:flex-end;padding:0}
.diff-add{color:var(--ok)}.diff-remove{color:var(--bad)}.log{max-height:28rem}.conflict{border:1px solid var(--bad);border-radius:6px;padding:.5rem;margin:.4rem 0}
.login{max-width:28rem}.login input{width:100%;margin:.4rem 0}
.editor{display:flex;align-items:stretch}.editor textarea{flex:1;white-space:pre;overflow:auto;border-radius:0 6px 6px 0}
.gutter{margin:0;padding:.5rem .4rem;border:1px solid var(--line);border-right:0;border-radius:6px 0 0 6px;overflow:hidden;text-align:right;color:var(--muted);user-select:none;min-width:3ch;background:var(--card)}
.gutter mark{background:var(--bad);color:var(--bg);font-weight:700;display:inline-block;width:100%}textarea[aria-invalid=true]{border-color:var(--bad)}
.field-errors li{margin:.2rem 0}.since{white-space:nowrap}
`
