"""Orthanc `PythonScript` of the dose-PACS stand-in (`nmdose stack up`): thin glue binding Orthanc's callbacks to
`nmdose.dose.standin_hook` (which hands dose objects to the dose spool; see its docstring).

Every callback returns at once: the C-STORE filter reads at most an object's first elements, the stored-instance
and change callbacks only queue an id or wake the spooling thread.
"""

import json
import sys

import orthanc

_conf = json.loads(orthanc.GetConfiguration())
# The embedded interpreter is Debian's python3 without the project's venv: add its site-packages.
for _path in reversed(_conf.get("NmdoseDoseStandin", {}).get("SitePackages", [])):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from nmdose.dose.standin_hook import from_orthanc_configuration  # noqa: E402
from nmdose.orthanc_log import log_into_orthanc  # noqa: E402

log_into_orthanc(orthanc)

hook = from_orthanc_configuration(_conf, orthanc)


def on_change(change_type, level, resource_id):
    if change_type == orthanc.ChangeType.NEW_INSTANCE:
        hook.wake()
    elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
        hook.start()
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
        hook.stop()


def on_stored_instance(dicom, instance_id):
    hook.stored(instance_id)


def on_incoming_cstore(received):
    return hook.incoming_store_status(received.GetInstanceRemoteAet(), received.GetInstanceData)


orthanc.RegisterOnChangeCallback(on_change)
orthanc.RegisterOnStoredInstanceCallback(on_stored_instance)
orthanc.RegisterIncomingCStoreInstanceFilter(on_incoming_cstore)
if hasattr(orthanc, "SetDescription"):
    orthanc.SetDescription("nmdose: the dose-PACS stand-in's hook into the dose spool")
