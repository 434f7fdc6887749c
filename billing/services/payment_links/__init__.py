"""Payment links: the hosted enrolment page behind a transaction's `URL` (docs/payment-links.md).

`pages.py`: what a link shows and whether it still opens; `submission.py`: a submitted card, sent
through verify-card; `attempts.py`: the per-IP limit on submissions.
"""

from billing.services.payment_links.pages import PaymentPage, link_url, open_link
from billing.services.payment_links.submission import Receipt, submit_card

__all__ = ["PaymentPage", "Receipt", "link_url", "open_link", "submit_card"]
