"""nmdose: research-PACS and radiation-dose pipeline (Orthanc plugin + command line)."""

__version__ = "0.1.0"
