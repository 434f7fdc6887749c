"""Enrolment: verify-card (`verify.py`), settling its first charge (`settlement.py`) and the
recovery pass for first charges whose outcome never arrived (`recovery.py`)."""

from billing.services.enrolment.recovery import run_recovery
from billing.services.enrolment.settlement import Enrolment
from billing.services.enrolment.verify import VerifyCardRequest, processor_named, tokenize, verify_card

__all__ = ["Enrolment", "VerifyCardRequest", "processor_named", "run_recovery", "tokenize", "verify_card"]
