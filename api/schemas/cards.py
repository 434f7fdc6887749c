"""Raw card data on the wire: read once, handed to a processor, never stored or logged."""

from __future__ import annotations

from pydantic import Field

from api.schemas.wire import Integer, Text, WireModel
from billing.processors.base import CardInfo


class CardInfoIn(WireModel):
    """Raw card data, sent to the processor and forgotten (never stored, never logged)."""

    number: Text = Field(max_length=23, repr=False, description="The card number (digits; spaces allowed).")
    # Bounded here so that nothing out of range reaches a processor or an integer column.
    exp_month: Integer = Field(ge=1, le=12, description="1..12")
    exp_year: Integer = Field(ge=0, le=9999, description="Four digits (two are read as 20YY).")
    cvv: Text = Field(max_length=4, repr=False)
    holder_name: Text | None = Field(None, max_length=200, repr=False)

    def card(self) -> CardInfo:
        return CardInfo(
            number=self.number.replace(" ", "").replace("-", ""),
            exp_month=self.exp_month,
            exp_year=self.exp_year,
            cvv=self.cvv,
            holder_name=self.holder_name or "",
        )
