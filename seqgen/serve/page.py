"""The playground page at ``GET /``: one HTML file with its script inline, nothing fetched from
elsewhere. A prompt box whose answer streams in (``/v1/completions`` with ``stream``), the
sampling options beside it, and for music runs a compose button that plays the result (audio
rendered by the server where a SoundFont is installed) and offers the MIDI file.

``?prompt=TEXT&run=1`` fills the prompt box and starts at once (how the headless-browser test
drives it)."""

from __future__ import annotations

import html
import json


def page(name: str, music: bool, infill: bool) -> str:
    return (
        _PAGE.replace("{{name}}", html.escape(name))
        .replace("{{music}}", json.dumps(music))
        .replace("{{text_hidden}}", "hidden" if music else "")
        .replace("{{music_hidden}}", "" if music else "hidden")
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>seqgen: {{name}}</title>
<style>
body { font: 15px/1.4 system-ui, sans-serif; margin: 2em auto; max-width: 60em; padding: 0 1em; color: #222; }
textarea { width: 100%; height: 6em; font: 14px monospace; }
pre#out { white-space: pre-wrap; background: #f6f6f6; padding: 1em; min-height: 8em; font: 14px monospace; }
fieldset { border: 1px solid #ccc; display: flex; flex-wrap: wrap; gap: .6em 1.2em; }
label { display: inline-flex; gap: .4em; align-items: center; }
input[type=number] { width: 5em; }
#status { color: #666; }
.err { color: #b00; }
</style></head>
<body>
<h1>seqgen: {{name}}</h1>
<fieldset><legend>options</legend>
<label>max tokens <input id="max_tokens" type="number" value="200" min="1"></label>
<label>temperature <input id="temperature" type="number" value="0.8" min="0" step="0.05"></label>
<label>top-k <input id="top_k" type="number" min="0" placeholder="off"></label>
<label>top-p <input id="top_p" type="number" min="0" max="1" step="0.05" placeholder="off"></label>
<label>min-p <input id="min_p" type="number" min="0" max="1" step="0.01" placeholder="off"></label>
<label>repetition penalty <input id="repetition_penalty" type="number" value="1" min="1" step="0.05"></label>
<label>seed <input id="seed" type="number" min="0" placeholder="random"></label>
<label>stop <input id="stop" type="text" placeholder="none"></label>
<label>API key <input id="key" type="password" placeholder="if required"></label>
</fieldset>
<section {{text_hidden}}>
<p><textarea id="prompt" placeholder="a prompt"></textarea></p>
<p><button id="go">Generate</button> <button id="halt" disabled>Stop</button> <span id="status"></span></p>
<pre id="out"></pre>
</section>
<section {{music_hidden}}>
<p><label>bars <input id="bars" type="number" value="8" min="1"></label>
<button id="compose">Compose</button> <span id="mstatus"></span></p>
<p><audio id="player" controls hidden></audio> <a id="midi" download="composition.mid" hidden>the MIDI file</a></p>
</section>
<script>
const $ = (id) => document.getElementById(id);
const MUSIC = {{music}};
function options() {
  const o = {};
  for (const k of ["temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed"]) {
    const v = $(k).value;
    if (v !== "") o[k] = Number(v);
  }
  return o;
}
function headers() {
  const h = {"Content-Type": "application/json"};
  if ($("key").value) h["Authorization"] = "Bearer " + $("key").value;
  return h;
}
async function failure(r) {
  try { return (await r.json()).error.message; } catch (e) { return r.status + " " + r.statusText; }
}
let controller = null;
async function generate() {
  const out = $("out"), status = $("status");
  out.textContent = $("prompt").value;
  status.textContent = "writing...";
  status.className = "";
  controller = new AbortController();
  $("go").disabled = true; $("halt").disabled = false;
  const body = {prompt: $("prompt").value, max_tokens: Number($("max_tokens").value), stream: true, ...options()};
  if ($("stop").value) body.stop = [$("stop").value.replace(/\\\\n/g, "\\n")];
  try {
    const r = await fetch("/v1/completions", {method: "POST", headers: headers(), body: JSON.stringify(body),
                                              signal: controller.signal});
    if (!r.ok) throw new Error(await failure(r));
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let buf = "", reason = null;
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let cut;
      while ((cut = buf.indexOf("\\n\\n")) >= 0) {
        const event = buf.slice(0, cut); buf = buf.slice(cut + 2);
        if (!event.startsWith("data: ") || event === "data: [DONE]") continue;
        const data = JSON.parse(event.slice(6));
        if (data.error) throw new Error(data.error.message);
        for (const c of data.choices) { out.textContent += c.text; if (c.finish_reason) reason = c.finish_reason; }
      }
    }
    status.textContent = "done (" + (reason || "stopped") + ")";
  } catch (e) {
    status.textContent = e.name === "AbortError" ? "stopped" : "error: " + e.message;
    if (e.name !== "AbortError") status.className = "err";
  } finally {
    $("go").disabled = false; $("halt").disabled = true;
  }
}
async function compose() {
  const status = $("mstatus");
  status.textContent = "composing..."; status.className = "";
  const body = {bars: Number($("bars").value), ...options()};
  try {
    let r = await fetch("/v1/compose", {method: "POST", headers: headers(), body: JSON.stringify({...body, audio: true})});
    if (r.status === 400) r = await fetch("/v1/compose", {method: "POST", headers: headers(), body: JSON.stringify(body)});
    if (!r.ok) throw new Error(await failure(r));
    const data = await r.json();
    $("midi").href = "data:audio/midi;base64," + data.midi_base64; $("midi").hidden = false;
    if (data.wav_base64) {
      $("player").src = "data:audio/wav;base64," + data.wav_base64; $("player").hidden = false; $("player").play();
    }
    status.textContent = data.notes + " notes, " + data.seconds + " s" + (data.wav_base64 ? "" : " (no SoundFont on the server: MIDI only)");
  } catch (e) { status.textContent = "error: " + e.message; status.className = "err"; }
}
$("go").onclick = generate;
$("halt").onclick = () => controller && controller.abort();
$("compose").onclick = compose;
const q = new URLSearchParams(location.search);
if (q.has("prompt")) $("prompt").value = q.get("prompt");
if (q.get("run") === "1") (MUSIC ? compose : generate)();
</script>
</body></html>
"""
