"""The params of the ``tpch`` workflow, and where its input files are."""

from pathlib import Path

from pydantic import BaseModel, Field

import klaw

# The folder holding klaw.toml: relative data paths are read from there, wherever klaw runs.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


class TpchParams(BaseModel):
    """Pass with ``--param name=value``; ``klaw schema tpch`` prints them."""

    data_dir: str = Field(
        "data/sf0.1",
        description="Folder of the TPC-H Parquet files, relative to the project folder.",
    )
    top_n: int = Field(10, ge=1, le=10_000, description="How many customers top_customers keeps.")


class ForecastParams(BaseModel):
    """The bounds of TPC-H Q6 (``forecast_revenue_change``), read by its SQL as ``$name``."""

    forecast_min_discount: float = Field(0.05, ge=0, le=1, description="Lowest discount (Q6).")
    forecast_max_discount: float = Field(0.07, ge=0, le=1, description="Highest discount (Q6).")
    forecast_max_quantity: float = Field(
        24, gt=0, description="Lines with a quantity below this (Q6)."
    )


def source_file(params: TpchParams, table: str) -> Path:
    """The Parquet file of one TPC-H table; fails without retries when it is missing."""
    folder = Path(params.data_dir)
    if not folder.is_absolute():
        folder = PROJECT_ROOT / folder
    path = folder / f"{table}.parquet"
    if not path.is_file():
        raise klaw.NonRetryableError(
            f"TPC-H file {path} does not exist. Generate the data first with "
            "`python examples/tpch/run_demo.py` (or `tpchgen-cli parquet -s 0.1 -o "
            f"{folder}`), or point --param data_dir= at a folder that has it."
        )
    return path
