"""Try a payload: `/ui/explain` (a form: paste a payload, choose source and event) and
`POST /api/explain` (JSON in, the CLI's `explain --format json` shape out), against the rules
in force; nothing is stored and no mirror is asked.

Input: the payload text, a source name, an event name (and for the API optional headers).
Output: the explain trace (bridge/explain.py), or the reason it cannot be made (400).
"""
from __future__ import annotations

from flask import current_app, jsonify, render_template, request

from bridge.errors import DeliveryError
from bridge.explain import explain_payload
from bridge.providers import get_provider
from bridge.web.ui.base import bp

MAX_PAYLOAD = 5 * 2**20


def _trace(source: str, body: bytes, event: str | None, headers=None):
    config = current_app.extensions["bridge"].config
    if len(body) > MAX_PAYLOAD:
        raise _Refused(f"the payload is larger than {MAX_PAYLOAD} bytes")
    try:
        return explain_payload(config, source, body, headers=headers, event_name=event or None)
    except DeliveryError as exc:
        raise _Refused(exc.message) from None


class _Refused(Exception):
    pass


@bp.route("/ui/explain", methods=["GET", "POST"])
def explain_page():
    config = current_app.extensions["bridge"].config
    sources = {name: get_provider(s.provider).EVENT_HEADER for name, s in sorted(config.sources.items())}
    form = {"source": request.form.get("source", next(iter(sources), "")),
            "event": request.form.get("event", "push"), "payload": request.form.get("payload", "")}
    trace = error = None
    if request.method == "POST":
        try:
            trace = _trace(form["source"], form["payload"].encode("utf-8"), form["event"])
        except _Refused as exc:
            error = str(exc)
    return render_template("explain.html", sources=sources, form=form, trace=trace, error=error), \
        400 if error else 200


@bp.post("/api/explain")
def api_explain():
    """`{"source", "event", "payload": <JSON value or text>, "headers": {...}}` -> the trace."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get("source"), str):
        return jsonify({"error": "send a JSON object: {\"source\": ..., \"event\": \"push\", "
                                 "\"payload\": {...}}"}), 400
    payload = data.get("payload")
    body = payload.encode("utf-8") if isinstance(payload, str) else \
        current_app.json.dumps(payload).encode("utf-8")
    headers = data.get("headers") if isinstance(data.get("headers"), dict) else None
    if headers and not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        return jsonify({"error": "headers must map names to strings"}), 400
    try:
        return jsonify(_trace(data["source"], body, data.get("event"), headers))
    except _Refused as exc:
        return jsonify({"error": str(exc)}), 400
