"""Orthanc `PythonScript` entry: thin glue binding Orthanc's callbacks to the nmdose runtime.

All logic lives in the importable `nmdose` package (nmdose.plugin); this file only adapts Orthanc's calling
conventions. Callbacks return at once: real work goes to worker threads through the durable queue.
"""

import json
import sys
import urllib.parse

import orthanc

_conf = json.loads(orthanc.GetConfiguration())
# The embedded interpreter is Debian's python3 without the project's venv: add its site-packages.
for _path in reversed(_conf.get("Nmdose", {}).get("SitePackages", [])):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from nmdose.orthanc_log import log_into_orthanc  # noqa: E402
from nmdose.plugin import from_orthanc_configuration  # noqa: E402

log_into_orthanc(orthanc)

plugin = from_orthanc_configuration(_conf)


def _versions() -> dict:
    system = json.loads(orthanc.RestApiGet("/system"))
    try:
        python_plugin = json.loads(orthanc.RestApiGet("/plugins/python")).get("Version")
    except Exception:
        python_plugin = None
    return {"orthanc": system.get("Version"), "python_plugin": python_plugin}


def on_change(change_type, level, resource_id):
    if change_type == orthanc.ChangeType.ORTHANC_STARTED:
        plugin.on_started(_versions())
    elif change_type == orthanc.ChangeType.STABLE_STUDY:
        plugin.on_stable_study(resource_id)
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
        plugin.on_stopped()


def on_rest(output, uri, **request):
    path = "/" + (request.get("groups") or ("",))[0]
    body = request.get("body") or b""
    if isinstance(body, str):
        body = body.encode()
    # Orthanc 1.10.1 with Python plugin 4.0 hands GET values over still percent-encoded ("E2E+head").
    query = {k: urllib.parse.unquote_plus(v) for k, v in (request.get("get") or {}).items()}
    response = plugin.handle_rest(request["method"], path, query, request.get("headers") or {}, body)
    for key, value in response.headers.items():
        if key != "Allow":
            output.SetHttpHeader(key, value)
    # Orthanc's SDK: AnswerBuffer for 200; SendHttpStatus for other codes except 401 and 405.
    if response.status == 200:
        output.AnswerBuffer(response.body, response.content_type)
    elif response.status == 401:
        output.SendUnauthorized("nmdose")
    elif response.status == 405:
        output.SendMethodNotAllowed(response.headers.get("Allow", "GET"))
    else:
        # Plugin 4.0 binds this as (status, str, size); newer ones as (status, bytes).
        output.SendHttpStatus(response.status, response.body.decode("utf-8", "replace"), len(response.body))


def on_incoming_cstore(received):
    def facts():  # the first elements of the file only: never the content tree of an SR, however deep
        from nmdose.security.profile import header_facts

        return header_facts(received.GetInstanceData())

    return plugin.incoming_store_status(received.GetInstanceRemoteAet(), facts)


_METHODS = {"1": "GET", "2": "POST", "3": "PUT", "4": "DELETE"}


def on_http_request(uri, **request):
    method = _METHODS.get(str(request.get("method")), str(request.get("method")))
    return plugin.allow_http(
        method, uri, request.get("ip") or "", request.get("headers") or {}, request.get("get") or {}
    )


orthanc.RegisterOnChangeCallback(on_change)
orthanc.RegisterIncomingHttpRequestFilter(on_http_request)
orthanc.RegisterIncomingCStoreInstanceFilter(on_incoming_cstore)
orthanc.RegisterRestCallback("/nmdose/(.*)", on_rest)

# Orthanc Explorer: a "nmdose" button on the home page, "dose for this study" on a study's page.
from nmdose.web.pages import orthanc_explorer_js  # noqa: E402

orthanc.ExtendOrthancExplorer(orthanc_explorer_js())
if hasattr(orthanc, "SetRootUri"):  # newer Python plugins list nmdose among the plugins with this page
    orthanc.SetRootUri("/nmdose/ui/")
if hasattr(orthanc, "SetDescription"):
    orthanc.SetDescription("nmdose: research PACS statistics and patient dose")
