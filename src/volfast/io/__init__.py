"""DBN ingest: chunked reading, instrument definitions, symbol parsing, atomic Parquet + manifest output."""

from volfast.io.dbn import (
    QUOTE_SCHEMAS,
    DayFiles,
    DBNFile,
    DBNReadError,
    IngestWarning,
    dataset_from_filename,
    find_day_files,
    list_dates,
)
from volfast.io.definitions import (
    CMESymbol,
    Definitions,
    OCCSymbol,
    definitions_from_symbology,
    load_definitions,
    parse_cme_option_symbol,
    parse_occ_symbol,
)

__all__ = [
    "CMESymbol",
    "DBNFile",
    "DBNReadError",
    "DayFiles",
    "Definitions",
    "IngestWarning",
    "OCCSymbol",
    "QUOTE_SCHEMAS",
    "dataset_from_filename",
    "definitions_from_symbology",
    "find_day_files",
    "list_dates",
    "load_definitions",
    "parse_cme_option_symbol",
    "parse_occ_symbol",
]
