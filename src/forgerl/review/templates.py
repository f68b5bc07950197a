"""The review app's pages as Jinja2 templates, autoescaped (every `{{ }}` is HTML-escaped).

No template marks anything `|safe` and nothing is rendered as Markdown: model output is shown as
text, so `<script>`, raw HTML and `[x](javascript:...)` links stay inert. There is no JavaScript;
the Content-Security-Policy (app.py) forbids scripts outright as a second line of defence.
"""

from __future__ import annotations

from jinja2 import DictLoader, Environment, StrictUndefined, select_autoescape

from forgerl.review.render import short_number

_BASE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{% block title %}forgerl review{% endblock %}</title>
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#1d1d1f;background:#fafafa}
header{background:#22303c;color:#fff;padding:.5em 1em;display:flex;gap:1.2em;align-items:center}
header a{color:#cfe3ff;text-decoration:none} header form{margin-left:auto}
main{padding:1em 1.5em} table{border-collapse:collapse;width:100%} td,th{border-bottom:1px solid #ddd;padding:.3em .5em;text-align:left;font-size:.92em}
pre,.text{white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,monospace;font-size:.88em;margin:.2em 0}
.step{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.5em .8em;margin:.6em 0}
.role{font-weight:600;text-transform:uppercase;font-size:.75em;color:#555}
.think{background:#f3f0ff;border-left:3px solid #8a6cff;padding:.3em .6em}
.call{background:#eef7ff;border-left:3px solid #2f7de1;padding:.3em .6em;margin:.3em 0}
.obs{background:#f4f4f4;border-left:3px solid #999;padding:.3em .6em}
.reply{background:#eefbea;border-left:3px solid #2e9e44;padding:.3em .6em}
.grid{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1fr);gap:1em} .summary{overflow-wrap:anywhere}
.breakdown{display:flex;flex-wrap:wrap;gap:.3em .4em;list-style:none;padding:0;margin:.3em 0}
.rc{display:inline-flex;max-width:100%;min-width:0;border:1px solid #ddd;border-radius:4px;overflow:hidden;font-size:.85em}
.rc-name{padding:.1em .4em;color:#555;background:#fff;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;min-width:0;max-width:24em}
.rc-value{padding:.1em .4em;background:#f0f0f0;font-family:ui-monospace,monospace;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;flex:none;max-width:10em}
.box{background:#fff;border:1px solid #ddd;border-radius:6px;padding:.6em .9em;margin:.6em 0}
.muted{color:#666;font-size:.85em} .err{color:#b00020} .ok{color:#1b7f2a}
.add{color:#1b7f2a} .del{color:#b00020}
label{display:inline-block;margin-right:.8em} textarea{width:100%;min-height:3em}
button{padding:.3em .9em}
.pager{display:flex;flex-wrap:wrap;gap:.8em;align-items:baseline;margin:.5em 0}
.shot{margin:.3em 0} .shot img{max-width:100%;max-height:18em;border:1px solid #ddd}
</style></head><body>
<header><strong>forgerl review</strong>
{% if expert %}<a href="/">runs</a><a href="/trajectories">trajectories</a><a href="/queue">queue</a><a href="/agreement">agreement</a>
<form method="post" action="/logout"><input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<span class="muted">signed in as {{ expert }}</span> <button>sign out</button></form>{% endif %}
</header><main>
{% if message %}<p class="{{ 'err' if error else 'ok' }}" id="flash">{{ message }}</p>{% endif %}
{% block body %}{% endblock %}
</main></body></html>"""

_LOGIN = """{% extends "base" %}{% block body %}
<h1>Sign in</h1>
<form method="post" action="/login">
<input type="hidden" name="csrf_token" value="{{ login_csrf }}">
<input type="hidden" name="next" value="{{ next_url }}">
<p><label>expert <input name="name" autocomplete="username"></label></p>
<p><label>password <input name="password" type="password" autocomplete="current-password"></label></p>
<button id="sign-in">sign in</button></form>
<p class="muted">Accounts are created with <code>forgerl review add-expert NAME --run DIR</code>.</p>
{% endblock %}"""

_RUNS = """{% extends "base" %}{% block body %}
<h1>Runs</h1>
<table><tr><th>run</th><th>status</th><th>trajectories</th><th>mean reward</th><th>labels</th></tr>
{% for r in runs %}<tr><td><a href="/trajectories?run={{ r.id | urlencode }}">{{ r.id }}</a></td><td>{{ r.status }}</td>
<td>{{ r.n }}</td><td>{{ r.mean_reward }}</td><td>{{ r.n_labels }}</td></tr>{% endfor %}</table>
{% endblock %}"""

_LIST = """{% extends "base" %}{% block body %}
<h1>Trajectories</h1>
<form method="get" action="/trajectories" class="box">
<label>run <input name="run" value="{{ f.run or '' }}" size="10"></label>
<label>family <select name="family"><option value="">any</option>{% for x in families %}<option value="{{ x }}" {{ 'selected' if x == f.family }}>{{ x }}</option>{% endfor %}</select></label>
<label>status <select name="status"><option value="">any</option>{% for x in statuses %}<option {{ 'selected' if x == f.status }}>{{ x }}</option>{% endfor %}</select></label>
<label>reward ≥ <input name="min_reward" value="{{ f.min_reward if f.min_reward is not none else '' }}" size="4"></label>
<label>≤ <input name="max_reward" value="{{ f.max_reward if f.max_reward is not none else '' }}" size="4"></label>
<label>step <input name="step" value="{{ f.step if f.step is not none else '' }}" size="4"></label>
<label>perturbation <select name="perturbation"><option value="">any</option>{% for x in ['yes', 'no'] %}<option {{ 'selected' if x == f.perturbation }}>{{ x }}</option>{% endfor %}</select></label>
<label>search <input name="q" value="{{ f.q or '' }}"></label> <button>filter</button></form>
{% macro pager() %}<nav class="pager"><span class="muted" id="row-count">{{ row_count }}</span>
{% if n_pages > 1 %}<span class="muted">· page {{ page_number }} of {{ n_pages }}</span>{% endif %}
{% if 'first' in links %}<a href="{{ links.first }}" id="page-first">« first</a> <a href="{{ links.prev }}" id="page-prev">‹ previous</a>{% endif %}
{% if 'next' in links %}<a href="{{ links.next }}" id="page-next">next ›</a> <a href="{{ links.last }}" id="page-last">last »</a>{% endif %}</nav>{% endmacro %}
{{ pager() }}
<table id="trajectories"><tr><th>trajectory</th><th>task</th><th>family</th><th>status</th><th>reward</th><th>step</th><th>calls</th><th>labels</th></tr>
{% for r in rows %}<tr><td><a href="/t/{{ r.id | urlencode }}">{{ r.id }}</a></td><td>{{ r.task_id }}</td><td>{{ r.family or '' }}</td>
<td>{{ r.status }}</td><td>{{ short_number(r.reward, 2) if r.reward is not none else '—' }}</td><td>{{ r.step if r.step is not none else '' }}</td>
<td>{{ r.n_calls }}</td><td>{{ r.n_labels }}</td></tr>{% endfor %}</table>
{% if n_pages > 1 %}{{ pager() }}{% endif %}
{% endblock %}"""

_STEPS = """{% macro steps(v, with_index=true) %}
{% for s in v.steps %}<div class="step" id="step-{{ s.index }}"><div class="role">{{ s.role }}{% if with_index %} · message {{ s.index }}{% endif %}</div>
{% if s.reasoning %}<div class="think"><span class="muted">thinking</span><div class="text">{{ s.reasoning }}</div></div>{% endif %}
{% if s.content %}<div class="{{ 'reply' if s.role == 'assistant' else '' }}"><div class="text">{{ s.content }}</div></div>{% endif %}
{% for c in s.tool_calls %}<div class="call"><span class="muted">tool call</span> <strong>{{ c.name }}</strong> <span class="muted">{{ c.id }}</span><pre>{{ c.arguments }}</pre>
{% if c.observation is not none %}<div class="obs"><span class="muted">observation</span><div class="text">{{ c.observation }}</div></div>{% endif %}</div>{% endfor %}
</div>{% endfor %}
{% endmacro %}
{% macro summary(v) %}
<p class="summary"><strong>{{ v.id }}</strong> · task {{ v.task_id }} · {{ v.family or 'no family' }} · {{ v.status }} ·
reward {% if v.reward is not none %}<span title="{{ v.reward }}">{{ short_number(v.reward) }}</span>{% else %}unscored{% endif %}</p>
{% if v.breakdown %}<ul class="breakdown" aria-label="reward breakdown">{% for c in v.breakdown %}<li class="rc"><span class="rc-name" title="{{ c.name }}">{{ c.label }}</span><span class="rc-value" title="{{ c.full }}">{{ c.shown }}</span></li>{% endfor %}</ul>{% endif %}
{% if v.failure %}<p class="err">failed at {{ v.failure }}</p>{% endif %}
{% for e in v.errors %}<p class="err text">{{ e }}</p>{% endfor %}
{% endmacro %}
{% macro appdev(v) %}{% set a = v.appdev %}
<h3 id="appdev-summary">App verifier: {{ a.passed }} of {{ a.total }} rubric items passed{% if not a.gate_passed %} · the execution gate failed (reward 0){% endif %}</h3>
{% if a.verifier or a.seconds is not none %}<p class="muted">{{ a.verifier or '' }}{% if a.seconds is not none %} · {{ '%.1f' % a.seconds }} s{% endif %}</p>{% endif %}
{% if not a.screenshots_kept and a.rows | selectattr('shots') | list %}<p class="muted" id="screenshots-gone">the screenshots were not kept (an episode keeps its evidence directory only when FORGERL_APPDEV_EVIDENCE names a directory to keep it in)</p>{% endif %}
<table id="appdev-items"><tr><th>item</th><th>layer</th><th>result</th><th>reason</th></tr>
{% for r in a.rows %}<tr class="verdict"><td>{{ r.id }}</td><td>{{ r.layer }}</td><td class="{{ 'ok' if r.passed else 'err' }}">{{ 'pass' if r.passed else 'fail' }}</td><td class="text">{{ r.reason }}</td></tr>
{% if r.actions or r.console or r.dom_excerpt or r.measured or r.shots %}<tr><td colspan="4">
{% if r.actions %}<details><summary>actions ({{ r.actions | length }})</summary><ol>{% for x in r.actions %}<li class="text">{{ x }}</li>{% endfor %}</ol></details>{% endif %}
{% if r.console %}<details><summary>console ({{ r.console | length }} line{{ '' if r.console | length == 1 else 's' }})</summary><pre>{% for line in r.console %}{{ line }}
{% endfor %}</pre></details>{% endif %}
{% if r.dom_excerpt %}<details><summary>DOM excerpt</summary><pre class="dom">{{ r.dom_excerpt }}</pre></details>{% endif %}
{% if r.measured %}<details><summary>measured</summary><pre>{{ r.measured }}</pre></details>{% endif %}
{% for s in r.shots %}{% if not a.screenshots_kept %}<span class="muted">screenshot {{ s.name }}</span> {% else %}<figure class="shot"><a href="/t/{{ v.id | urlencode }}/screenshot/{{ s.index }}"><img src="/t/{{ v.id | urlencode }}/screenshot/{{ s.index }}" alt="screenshot {{ s.name }}" loading="lazy"></a><figcaption class="muted">{{ s.name }}</figcaption></figure>{% endif %}{% endfor %}
</td></tr>{% endif %}{% endfor %}</table>
{% endmacro %}
{% macro deliverable(v) %}
<div class="box" id="deliverable"><h3 id="final-heading">{{ v.final.heading }}</h3>
{% if v.final.kind == 'submitted' %}<p class="muted">the episode ended in the tool call <strong>{{ v.final.tool }}</strong>; its arguments:</p>{% endif %}
<div class="{{ 'reply' if v.final.kind in ('submitted', 'reply') else 'obs' }} text" id="final-reply">{{ v.final.text if v.final.text is not none else '(no final reply)' }}</div>
{% if v.final.note %}<p class="muted">written with it</p><div class="text" id="final-note">{{ v.final.note }}</div>{% endif %}
{% if v.final.observation is not none %}<p class="muted">the environment answered</p><div class="obs text">{{ v.final.observation }}</div>{% endif %}
{% if v.diff %}<h3>Files changed</h3><pre>{% for line in v.diff.splitlines() %}<span class="{{ 'add' if line.startswith('+') else ('del' if line.startswith('-') else '') }}">{{ line }}</span>
{% endfor %}</pre>{% endif %}
{% if v.appdev %}{{ appdev(v) }}<details><summary>raw verifier evidence</summary><pre id="evidence">{{ v.evidence }}</pre></details>
{% elif v.evidence %}<h3>Verifier evidence</h3><pre id="evidence">{{ v.evidence }}</pre>{% endif %}
{% if v.perturbation %}<h3>Perturbation</h3><pre>{{ v.perturbation }}</pre>{% endif %}</div>
{% endmacro %}"""

_TRAJ = """{% extends "base" %}{% from "steps" import steps, summary, deliverable %}
{% block title %}{{ v.id }} · forgerl review{% endblock %}{% block body %}
<h1>Trajectory</h1>{{ summary(v) }}
<p>{% for o in siblings %}<a href="/compare?a={{ v.id | urlencode }}&b={{ o | urlencode }}">compare with {{ o }}</a> {% endfor %}
{% if not tokens %}<a href="?tokens=1">show tokens</a>{% endif %}</p>
<div class="grid"><div>{{ steps(v) }}</div><div>
{{ deliverable(v) }}
<div class="box"><h3>Score (rubric {{ rubric.version }})</h3>
<form method="post" action="/t/{{ v.id | urlencode }}/rubric" id="rubric-form">
<input type="hidden" name="csrf_token" value="{{ csrf_token }}">
{% for item in rubric.items %}<p><strong>{{ item.name }}</strong> <span class="muted">{{ item.guidance }}</span><br>
{% for n in rubric.scale %}<label><input type="radio" name="score_{{ item.name }}" value="{{ n }}" {{ 'checked' if my_scores.get(item.name) == n }}> {{ n }}</label>{% endfor %}</p>{% endfor %}
<p><textarea name="note" placeholder="note (optional)">{{ my_note }}</textarea></p><button id="save-score">save score</button></form></div>
<div class="box"><h3>Comment on a step</h3>
<form method="post" action="/t/{{ v.id | urlencode }}/comment" id="comment-form"><input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<label>message <select name="message_index">{% for s in v.steps %}<option value="{{ s.index }}">{{ s.index }} · {{ s.role }}</option>{% endfor %}</select></label>
<textarea name="text" placeholder="what is good or wrong here"></textarea><button id="add-comment">add comment</button></form></div>
<div class="box" id="labels"><h3>Labels</h3>
{% for lab in labels %}<div class="label"><strong>{{ lab.expert }}</strong> <span class="muted">{{ lab.kind }} · {{ lab.rubric_version }} · {{ lab.when }}</span>
<div class="text">{{ lab.summary }}</div></div>{% else %}<p class="muted">no labels yet</p>{% endfor %}</div>
</div></div>
{% if tokens %}<div class="box"><h3>LLM calls (per-token logprob, loss mask)</h3>
{% for c in v.calls %}<p class="muted">call {{ loop.index0 }} · policy version {{ c.policy_version }} · {{ c.finish_reason }}</p>
<pre>{% for t in c.tokens %}{{ t[0] }}:{{ '%.3f' % t[1] }}{{ '' if t[2] else '(masked)' }} {% endfor %}</pre>{% endfor %}</div>{% endif %}
{% endblock %}"""

_COMPARE = """{% extends "base" %}{% from "steps" import steps, summary, deliverable %}
{% block body %}<h1>A/B comparison · task {{ a.task_id }}</h1>
<form method="post" action="/compare" class="box" id="preference-form"><input type="hidden" name="csrf_token" value="{{ csrf_token }}">
<input type="hidden" name="a" value="{{ a.id }}"><input type="hidden" name="b" value="{{ b.id }}">
<label><input type="radio" name="preferred" value="{{ a.id }}" {{ 'checked' if mine == a.id }}> A is better</label>
<label><input type="radio" name="preferred" value="{{ b.id }}" {{ 'checked' if mine == b.id }}> B is better</label>
<textarea name="reason" placeholder="why (required)">{{ my_reason }}</textarea><button id="save-preference">save preference</button></form>
{% if others %}<p class="muted">other experts: {% for o in others %}{{ o.expert }} preferred {{ 'A' if o.preferred == a.id else 'B' }} ({{ o.reason }}); {% endfor %}</p>{% endif %}
<div class="grid"><div><h2>A</h2>{{ summary(a) }}{{ deliverable(a) }}{{ steps(a, false) }}</div>
<div><h2>B</h2>{{ summary(b) }}{{ deliverable(b) }}{{ steps(b, false) }}</div></div>
{% endblock %}"""

_AGREEMENT = """{% extends "base" %}{% block body %}<h1>Agreement between experts</h1>
<p class="muted">rubric {{ ag.rubric_version }}; current labels only</p>
<h2>Per rubric item</h2><table id="item-agreement"><tr><th>item</th><th>comparisons</th><th>exact</th><th>within 1</th><th>mean |diff|</th></tr>
{% for i in ag.items %}<tr><td>{{ i.item }}</td><td>{{ i.n_pairs }}</td><td>{{ pct(i.exact) }}</td><td>{{ pct(i.within_one) }}</td><td>{{ num(i.mean_abs_diff) }}</td></tr>{% endfor %}</table>
<h2>Per pair of experts</h2><table id="pair-agreement"><tr><th>experts</th><th>shared item scores</th><th>exact</th><th>shared comparisons</th><th>same preference</th></tr>
{% for p in ag.pairs %}<tr><td>{{ p.experts[0] }} · {{ p.experts[1] }}</td><td>{{ p.n_scores }}</td><td>{{ pct(p.score_exact) }}</td><td>{{ p.n_preferences }}</td><td>{{ pct(p.preference_agree) }}</td></tr>
{% else %}<tr><td colspan="5" class="muted">no trajectory has labels from two experts yet</td></tr>{% endfor %}</table>
{% endblock %}"""

_QUEUE = """{% extends "base" %}{% block body %}<h1>Worth labelling next</h1>
<p class="muted">verifier vs reward model disagreement{{ '' if has_rm else ' (no reward model loaded: start with --rm DIR)' }}, high-variance groups, expert disagreement, unlabelled</p>
<table id="queue"><tr><th>trajectory</th><th>priority</th><th>why</th></tr>
{% for e in entries %}<tr><td><a href="/t/{{ e.trajectory_id | urlencode }}">{{ e.trajectory_id }}</a></td><td>{{ '%.2f' % e.priority }}</td><td>{{ e.reasons | join('; ') }}</td></tr>{% endfor %}</table>
{% endblock %}"""


def make_environment() -> Environment:
    env = Environment(loader=DictLoader({"base": _BASE, "login": _LOGIN, "runs": _RUNS, "list": _LIST, "steps": _STEPS,
                                         "trajectory": _TRAJ, "compare": _COMPARE, "agreement": _AGREEMENT,
                                         "queue": _QUEUE}),
                      autoescape=select_autoescape(default=True, default_for_string=True), undefined=StrictUndefined)
    env.globals["pct"] = lambda x: "—" if x != x else f"{100 * x:.0f}%"
    env.globals["num"] = lambda x: "—" if x != x else f"{x:.2f}"
    env.globals["short_number"] = short_number
    return env
