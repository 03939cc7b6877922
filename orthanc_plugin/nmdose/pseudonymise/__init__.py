"""Pseudonymised copies of a research project's studies (issue 17 item 3, docs/pseudonymise.md).

`deid` holds the pure parts (Orthanc's anonymization request, the keyed pseudonyms, date shift and UID map,
applied to the bytes Orthanc gives back); `export` reads the studies from the research PACS and writes the copies
into the pseudoPACS node or a folder; `cli` is `nmdose pseudonymise`.
"""
