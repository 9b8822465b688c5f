/** The try-it page served at `/`: a text box, a language choice and the result, using the JSON API. */
export const PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>xlt model</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body { font: 15px/1.4 system-ui, sans-serif; max-width: 46rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
 textarea, input, select, button { font: inherit; }
 textarea { width: 100%; min-height: 6rem; box-sizing: border-box; }
 .row { margin: .6rem 0; }
 pre { background: #f4f4f4; padding: .8rem; white-space: pre-wrap; word-break: break-word; }
 .err { color: #b00020; }
 #question-row { display: none; }
</style>
</head>
<body>
<h1>xlt</h1>
<p id="info">Loading model information…</p>
<form id="form">
 <div class="row" id="question-row"><label>Question<br><input id="question" style="width:100%"></label></div>
 <div class="row"><label><span id="text-label">Text</span><br><textarea id="text" required></textarea></label></div>
 <div class="row"><label>Language <select id="lang"><option value="">detect</option></select></label>
 <button id="submit" type="submit">Run</button></div>
</form>
<pre id="result" aria-live="polite"></pre>
<script>
const $ = (id) => document.getElementById(id);
let info = null;
const routes = { 'sequence-classification': 'classify', 'token-classification': 'tag', 'question-answering': 'qa', 'masked-lm': 'fill' };
fetch('/v1/info').then((r) => r.json()).then((i) => {
  info = i;
  $('info').textContent = 'Task: ' + i.head + ' · languages: ' + (i.languages.join(', ') || '(any)');
  for (const l of i.languages) { const o = document.createElement('option'); o.value = l; o.textContent = l; $('lang').appendChild(o); }
  if (i.head === 'question-answering') { $('question-row').style.display = 'block'; $('text-label').textContent = 'Context'; }
  if (i.head === 'masked-lm') $('text-label').textContent = 'Text with ' + i.maskToken;
});
$('form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const body = { text: $('text').value };
  if ($('lang').value) body.lang = $('lang').value;
  if (info.head === 'question-answering') { body.context = body.text; delete body.text; body.question = $('question').value; }
  $('result').className = ''; $('result').textContent = 'Running…';
  const r = await fetch('/v1/' + routes[info.head], { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const j = await r.json();
  if (!r.ok) { $('result').className = 'err'; $('result').textContent = j.error ? j.error.message : JSON.stringify(j); return; }
  $('result').textContent = JSON.stringify(j, null, 2);
});
</script>
</body>
</html>
`;
