"""Deterministic generator for the embedded "Harbor" support-ticket dataset.

Harbor is a fictional SaaS + hardware company (Harbor Cloud, Harbor POS
terminal, Harbor Sync app, Harbor Payments, Harbor Dock scanner, ...).  This
script writes ``train.csv`` / ``validation.csv`` / ``test.csv`` (columns
``id,subject,body,category,urgency,queue``) and ``samples.txt`` (8 unlabeled
tickets for routing demos) into ``data/harbor/``.

Design
------
Every ticket starts from a small latent record, and the text is composed from
it, so each label is carried by cues in the text rather than by a column:

* ``category`` (12 classes, imbalanced like a real desk).  Chosen first; it
  picks a *variant* (e.g. login_access/security vs login_access/password) and
  the variant's subject and problem-statement templates.  Categories are kept
  from being a one-keyword problem by (a) shared vocabulary between siblings
  (invoice/charge/card/refund appear across billing_invoice, payment_failure,
  refund_request and account_closure; error/crash/slow/API across bug_report,
  performance_outage and integration_api; ...), (b) "aside" sentences,
  details and what-was-tried lines borrowed from a sibling category, (c)
  multi-issue tickets ("Also, ..." a sibling's problem; the label stays with
  the first issue), (d) genuinely ambiguous problem statements that several
  categories share (``AMBIGUOUS_PROBLEMS``), (e) subjects that say nothing
  ("Help", "Question"), and (f) ~6% misfiling to a sibling category.  These
  rates were tuned so TF-IDF + logistic regression lands near 0.85 macro-F1
  rather than ~0.97.
* ``urgency`` (P0..P3).  The true tier is drawn from a per-category base rate
  and cued by a sentence (outage / "all users" / revenue for P0, deadlines and
  "today" for P1, "no rush" / "whenever you get a chance" for P3), a shouty or
  "URGENT:" subject for P0.  Cues are not always present, and 10% of the
  labels are then replaced by a random other tier (agent disagreement).
* ``queue`` (8 classes).  Derived from category, variant, customer segment and
  true urgency by ``route_queue`` -- so it depends on the category but is not a
  function of it: enterprise customers (text mentions an Enterprise plan,
  account manager, SLA or contract number) go to enterprise_success for many
  categories, full outages go to platform_sre while slowness goes to
  engineering, 2FA/SSO/suspicious-login tickets go to trust_and_safety, simple
  "where is my order" questions stay in tier1_support, and so on.  Only ~70%
  of enterprise tickets say so in the text (agents also see the CRM), ~3% of
  non-enterprise tickets mention Enterprise in passing, and ~7% of tickets are
  misrouted.  No text ever names a queue.

Partial labels: as on a real desk not every ticket is labeled for every task.
After generation, each task's label is blanked independently per row with a
fixed probability (category ~0.5%, urgency ~20%, queue ~37%), from a separate
random stream so the masking is independent of the text, and with the same
rates in every split.

Text realism: greetings, signatures, fake order/invoice/serial/tracking
numbers, error and HTTP codes, amounts, dates, ``<EMAIL>``/``<PHONE>`` tokens,
multi-line bodies, ~10% empty subjects, some lowercase or shouty subjects,
letter-level typos in ~15% of tickets, ~3% one-liner bodies ("help!!") and ~4%
multi-paragraph bodies (> 128 tokens).  ``samples.txt`` holds 8 clean demo
tickets, one per routing situation (``SAMPLE_SPECS``), one per line.

Determinism: all randomness comes from ``random.Random`` instances seeded from
``--seed``; all iteration is over tuples/lists (never sets), and nothing
depends on time or the environment, so the output is byte-identical for a
given seed.  Only the standard library is used.
"""

from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

DEFAULT_SEED = 20261123
DEFAULT_OUT_DIR = Path(__file__).resolve().parent / "harbor"

SPLITS = (("train", 3000), ("validation", 500), ("test", 500))
COLUMNS = ("id", "subject", "body", "category", "urgency", "queue")

URGENCY_TIERS = ("P0", "P1", "P2", "P3")
QUEUES = (
    "tier1_support",
    "billing_ops",
    "logistics",
    "engineering",
    "platform_sre",
    "trust_and_safety",
    "enterprise_success",
    "product_feedback",
)

# Probability that a row keeps its label for each task (the rest are blank).
LABEL_COVERAGE = (("category", 0.995), ("urgency", 0.80), ("queue", 0.63))

URGENCY_NOISE = 0.10  # labels replaced by a random *other* tier
QUEUE_NOISE = 0.07  # misrouted tickets
CATEGORY_NOISE = 0.06  # misfiled tickets (relabeled to a sibling category)
# Enterprise customers whose text says so; for the rest the agent knew from
# the CRM, which the model cannot see.
P_ENTERPRISE_CUE = 0.70

# Text-style rates.
P_EMPTY_SUBJECT = 0.10
P_TYPOS = 0.15
P_SHORT_BODY = 0.03
P_LONG_BODY = 0.04
P_ASIDE = 0.35
P_SECOND_ISSUE = 0.20  # "Also, ..." a sibling category's problem; label stays the primary one
P_GENERIC_SUBJECT = 0.18
P_BORROWED_DETAIL = 0.30  # details / what-was-tried taken from a sibling category
P_AMBIGUOUS = 0.20  # the main problem is worded so it could belong to several categories

# --------------------------------------------------------------------------
# Fake-value pools
# --------------------------------------------------------------------------

FIRST_NAMES = (
    "Maria", "James", "Aisha", "Tom", "Priya", "Lukas", "Sofia", "Daniel",
    "Mei", "Omar", "Hannah", "Carlos", "Emma", "Kwame", "Yuki", "Liam",
    "Fatima", "Noah", "Chloe", "Ravi", "Grace", "Mateo", "Olivia", "Ben",
    "Ines", "Sam", "Nadia", "Jonas", "Alex", "Rosa",
)
LAST_INITIALS = tuple("ABCDEFGHJKLMNPRSTVW")
COMPANIES = (
    "Bluefin Coffee", "Maple & Rye Bakery", "Northgate Hardware", "Lumen Books",
    "Tidewater Outfitters", "Copper Kettle Cafe", "Green Basket Grocers",
    "Pine Street Pharmacy", "Urban Thread Boutique", "Harborview Deli",
    "Summit Cycles", "Little Fig Bistro", "Redwood Pet Supply",
    "Cobalt Electronics", "Sunny Side Diner", "Atlas Home Goods",
    "Fieldstone Market", "Juniper Florist", "Brightline Fitness",
    "Oak & Ember Grill",
)
STREETS = (
    "Main St", "Elm Ave", "Harbor Rd", "5th Ave", "Market St", "Bay Blvd",
    "Oak Lane", "King St", "Union Sq", "Riverside Dr",
)
CITIES = ("Portland", "Tacoma", "Austin", "Denver", "Leeds", "Dublin", "Toronto", "Oakland")
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July",
    "August", "September", "October", "November", "December",
)
WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")
PLANS = ("Starter", "Pro", "Growth", "Plus")
INTEGRATIONS = ("Shopify", "QuickBooks", "Xero", "WooCommerce", "Zapier", "Salesforce", "Mailchimp")
ENDPOINTS = ("/v2/orders", "/v2/payments", "/v1/customers", "/v2/inventory", "/v2/webhooks", "/v1/refunds")
HTTP_CODES = ("400", "401", "403", "404", "409", "429", "500", "502", "503", "504")
ERROR_WORDS = ("TIMEOUT", "SYNC_CONFLICT", "AUTH_FAILED", "NET_UNREACHABLE", "INVALID_STATE", "TAMPER_02")
HARDWARE = (
    "Harbor POS terminal", "Harbor Dock scanner", "Harbor receipt printer",
    "Harbor card reader", "Harbor cash drawer", "Harbor Mini terminal",
)


def _date(rng: random.Random) -> str:
    """A date in one of the formats customers actually type."""
    month = rng.randrange(12)
    day = rng.randint(1, 28)
    style = rng.randrange(4)
    if style == 0:
        return f"{MONTHS[month][:3]} {day}"
    if style == 1:
        return f"2026-{month + 1:02d}-{day:02d}"
    if style == 2:
        return f"{day} {MONTHS[month]}"
    return f"{month + 1}/{day}"


def _amount(rng: random.Random) -> str:
    cur = rng.choice(("$", "$", "$", "€", "£"))
    return f"{cur}{rng.randint(9, 2400)}.{rng.randrange(100):02d}"


def _error(rng: random.Random) -> str:
    style = rng.randrange(3)
    if style == 0:
        return f"E{rng.randint(100, 999)}"
    if style == 1:
        return f"HBX-{rng.randint(1000, 9999)}"
    return f"ERR_{rng.choice(ERROR_WORDS)}"


def _alnum(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("ABCDEFGHJKLMNPQRSTUVWXYZ0123456789") for _ in range(n))


def fake_values(rng: random.Random, products: tuple) -> dict:
    """All placeholder values for one ticket (drawn in a fixed order)."""
    name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_INITIALS)}."
    return {
        "product": rng.choice(products),
        "hw": rng.choice(HARDWARE),
        "order": f"#HB-{rng.randint(10000, 99999)}",
        "invoice": f"INV-2026-{rng.randint(1000, 99999):05d}",
        "amount": _amount(rng),
        "amount2": _amount(rng),
        "date": _date(rng),
        "weekday": rng.choice(WEEKDAYS),
        "month": rng.choice(MONTHS),
        "serial": f"HDS-{_alnum(rng, 4)}-{rng.randint(1000, 9999)}",
        "error": _error(rng),
        "http": rng.choice(HTTP_CODES),
        "card4": f"{rng.randint(0, 9999):04d}",
        "tracking": f"1Z{_alnum(rng, 12)}",
        "version": f"{rng.randint(3, 6)}.{rng.randint(0, 19)}.{rng.randint(0, 9)}",
        "integration": rng.choice(INTEGRATIONS),
        "endpoint": rng.choice(ENDPOINTS),
        "location": f"our {rng.choice(STREETS)} store",
        "city": rng.choice(CITIES),
        "plan": rng.choice(PLANS),
        "n_users": str(rng.randint(12, 60)),
        "n_small": str(rng.randint(2, 11)),
        "n_terms": str(rng.randint(2, 12)),
        "n_stores": str(rng.randint(2, 9)),
        "days": str(rng.randint(4, 21)),
        "seats": str(rng.choice((75, 120, 200, 250, 400, 600, 1200))),
        "contract": f"ENT-{rng.randint(10000, 99999)}",
        "am_name": rng.choice(FIRST_NAMES),
        "year": str(rng.randint(2019, 2025)),
        "email": "<EMAIL>",
        "phone": "<PHONE>",
        "name": name,
        "company": rng.choice(COMPANIES),
    }


# --------------------------------------------------------------------------
# Category specs.  Each category has shared subjects, details, things tried
# and "asides" (sentences a *sibling* category may borrow as a distractor);
# each variant has its own subjects and problem statements.  The variant is
# what routing looks at, so its wording is the queue cue.
# --------------------------------------------------------------------------

CATEGORIES = {
    "login_access": {
        "weight": 0.20,
        "urgency": (0.02, 0.22, 0.50, 0.26),
        "enterprise": 0.12,
        "products": ("Harbor Cloud dashboard", "Harbor Sync app", "Harbor POS terminal", "Harbor Cloud"),
        "subjects": (
            "Can't log in", "Login not working", "Unable to sign in to {product}",
            "Access problem", "cannot access the dashboard", "Sign in issue",
            "Can't get into my account",
        ),
        "variants": (
            {
                "name": "password",
                "weight": 0.45,
                "subjects": ("Password reset email never arrives", "Reset link expired", "Wrong password error but it's right"),
                "problems": (
                    "I can't log into {product} since this morning. It keeps saying my password is incorrect even right after I reset it.",
                    "The password reset email never shows up. I've checked spam and the address on file is {email}.",
                    "When I sign in the page just reloads and drops me back on the login screen.",
                    "My staff can't log into the {product} at {location}, it says invalid credentials for everyone's PIN.",
                    "I reset my password twice and both times the link says it has expired when I click it.",
                    "I changed my email address last week and now I don't know which one to use to sign in.",
                ),
            },
            {
                "name": "locked",
                "weight": 0.20,
                "subjects": ("Account locked", "Locked out", "Account suspended?"),
                "problems": (
                    "My account got locked after too many attempts and the unlock email never arrived.",
                    "It says our account is suspended, but as far as I know the invoice was paid.",
                    "Our manager left the company and the owner login was under her email. We need to get back into the account.",
                    "The terminal at {location} shows 'user locked' for two of my cashiers.",
                    "I'm the admin but I've been locked out of the {product} and nobody else has admin rights.",
                ),
            },
            {
                "name": "security",
                "weight": 0.35,
                "subjects": (
                    "2FA codes not working", "SSO login failing for our team", "Suspicious login on my account",
                    "Lost phone with authenticator", "Okta SSO error", "Someone logged into my account?",
                    "two-factor code never arrives",
                ),
                "problems": (
                    "The 2FA code from my authenticator app is rejected every time, even though the clock on my phone is right.",
                    "I got a new phone and lost my authenticator, so I can't get the two-factor codes anymore.",
                    "Our SSO through Okta started failing with error {error} for everyone who signs in.",
                    "I got an email about a new login from a device I don't recognise in {city}. I did not sign in from there.",
                    "SAML login returns 'assertion invalid' after we rotated our certificate.",
                    "The SMS verification codes aren't arriving at {phone}, so I'm stuck at the two-factor step.",
                    "My password was changed and I didn't do it. I think someone got into the account.",
                    "Single sign-on with Google Workspace sends our staff to a blank page instead of the dashboard.",
                ),
            },
        ),
        "details": (
            "The error says {error}.", "I'm on Chrome on a Windows laptop.",
            "It happens in both the Sync app and the web dashboard.", "My username is {email}.",
            "It started around {date}.", "Other staff members can log in fine.",
            "It's the same on the iPad and on my phone.",
        ),
        "tried": (
            "I cleared cookies and cache.", "Tried incognito and a different browser.",
            "I restarted the terminal twice.", "I already reset the password.",
            "I tried the 'forgot password' link again this morning.",
        ),
        "asides": (
            "I can still log in on my phone, for what it's worth.",
            "I had to reset my password last week as well.",
        ),
    },
    "billing_invoice": {
        "weight": 0.13,
        "urgency": (0.00, 0.14, 0.52, 0.34),
        "enterprise": 0.20,
        "products": ("Harbor Cloud", "Harbor Payments", "Harbor Cloud subscription"),
        "subjects": (
            "Question about invoice {invoice}", "Invoice amount looks wrong", "Need a copy of last month's invoice",
            "VAT number missing on invoice", "Billing question", "Why did my bill go up?",
            "Charged for more seats than we have", "invoice {invoice}",
        ),
        "variants": (
            {
                "name": "invoice",
                "weight": 0.65,
                "subjects": ("Update billing address on invoices", "Wrong company name on invoice"),
                "problems": (
                    "Invoice {invoice} shows {amount} but our plan should be {amount2} a month.",
                    "I need our company VAT ID added to invoice {invoice} for our accountant.",
                    "Can you resend the invoices for {month}? I can't find them on the billing page.",
                    "The invoice is still addressed to our old company name and address.",
                    "There's a line item called 'hardware lease' on the invoice that I don't recognize.",
                    "Our accountant needs itemised invoices with tax shown separately for {month}.",
                    "The invoice total of {amount} doesn't match what was charged to the card ending in {card4}.",
                ),
            },
            {
                "name": "plan",
                "weight": 0.35,
                "subjects": ("Downgrade not reflected on bill", "Switch to annual billing"),
                "problems": (
                    "We were billed for {n_users} seats but we only have {n_small} active users.",
                    "Our bill went up this month and I don't see why. Nothing changed on our side.",
                    "We downgraded to the {plan} plan on {date} but were still invoiced at the old price.",
                    "I'd like to switch from monthly to annual billing and understand the proration on the next invoice.",
                    "We added a second location mid-month. How is that charged on the next invoice?",
                ),
            },
        ),
        "details": (
            "The invoice number is {invoice}.", "The amount was {amount}.", "Our billing email is {email}.",
            "We're on the {plan} plan.", "It was issued on {date}.", "The charge hit our card on {date}.",
        ),
        "tried": (
            "I checked the billing page in the dashboard.", "Our bookkeeper looked at it too.",
            "I compared it with last month's invoice.", "I downloaded the PDF again but it's the same.",
        ),
        "asides": (
            "Our last invoice looked fine, for comparison.",
            "The invoice for {month} was paid on time.",
            "We're on the {plan} plan, billed monthly.",
        ),
    },
    "payment_failure": {
        "weight": 0.09,
        "urgency": (0.08, 0.32, 0.42, 0.18),
        "enterprise": 0.10,
        "products": ("Harbor Payments", "Harbor POS terminal", "Harbor card reader"),
        "subjects": (
            "Payment failed", "Card keeps getting declined", "Can't pay my invoice",
            "Customer cards declined on terminal", "Transaction error {error}", "payments not going through",
        ),
        "variants": (
            {
                "name": "card",
                "weight": 0.45,
                "subjects": ("Auto-pay failed", "Can't update card on file"),
                "problems": (
                    "I tried to pay invoice {invoice} with the card ending in {card4} and it's declined, but the bank says there's no block.",
                    "Our subscription payment failed and now there's a banner saying the account will be suspended.",
                    "The auto-pay on file failed, and when I try to update the card the form gives an error.",
                    "The payment page keeps spinning and then says 'payment could not be processed'.",
                    "We switched banks and the direct debit for our plan is being rejected.",
                ),
            },
            {
                "name": "terminal",
                "weight": 0.40,
                "subjects": ("Payouts not received", "Contactless not working", "Transactions stuck pending"),
                "problems": (
                    "Customers' cards are being declined on the {hw} with error {error}, even contactless.",
                    "Our payout of {amount} from Harbor Payments hasn't landed in our bank account; it was due {date}.",
                    "Transactions are stuck as 'pending' in the dashboard for hours.",
                    "Apple Pay payments fail at checkout but chip cards work fine.",
                    "The card reader says 'transaction declined' for about half of our customers today.",
                    "Tap to pay times out on the terminal and the customer ends up paying twice.",
                ),
            },
            {
                "name": "fraud",
                "weight": 0.15,
                "subjects": ("Unrecognised transactions", "Chargeback dispute", "Possible card testing"),
                "problems": (
                    "We're seeing a bunch of small test charges from cards we don't recognize. Looks like someone is testing stolen cards through our checkout.",
                    "A customer filed a chargeback for {amount} claiming they never visited, but we have the signed receipt.",
                    "Someone ran several {amount} transactions on our terminal that none of us authorized.",
                    "Our online checkout got dozens of declined attempts overnight from the same IP.",
                ),
            },
        ),
        "details": (
            "Error code {error}.", "The card ends in {card4}.", "It's about {amount} in total.",
            "This started on {date}.", "It's happening on {n_terms} terminals.", "Bank reference attached.",
        ),
        "tried": (
            "We restarted the terminals.", "I tried a different card.", "I called our bank and they see nothing wrong.",
            "We re-paired the card reader with the iPad.",
        ),
        "asides": (
            "The card on file was updated last month, in case that matters.",
            "One payment did go through earlier, the rest were declined.",
            "Our payout schedule is daily.",
        ),
    },
    "refund_request": {
        "weight": 0.08,
        "urgency": (0.00, 0.14, 0.50, 0.36),
        "enterprise": 0.14,
        "products": ("Harbor Cloud", "Harbor Payments", "Harbor POS terminal"),
        "subjects": (
            "Refund request", "Requesting a refund for {order}", "Charged twice, please refund",
            "Want my money back", "Refund for unused months", "refund??",
        ),
        "variants": (
            {
                "name": "money",
                "weight": 0.75,
                "subjects": ("Refund duplicate charge", "Refund still not received"),
                "problems": (
                    "We were charged twice for {month} ({amount} each). Please refund the duplicate charge.",
                    "I cancelled within the free trial but was still billed {amount}. I'd like that refunded.",
                    "We paid for the annual plan but closed one store on {date}. Can we get a prorated refund for the unused seats?",
                    "The refund you promised on {date} still hasn't appeared on my card ending in {card4}.",
                    "Please refund invoice {invoice}; it was issued in error after we downgraded.",
                    "We were charged {amount} for an add-on we never turned on. Please reverse it.",
                ),
            },
            {
                "name": "return",
                "weight": 0.25,
                "subjects": ("Return and refund for {hw}", "Cancel order and refund"),
                "problems": (
                    "I'd like to return the {hw} from order {order} and get a refund. It doesn't fit our counter.",
                    "Order {order} arrived after we'd already bought a scanner elsewhere, so we'd like to send it back for a refund.",
                    "We ordered one {hw} too many. How do we send it back and get the money returned?",
                    "Can I get a return label for the {hw}? We'd like a refund instead of a replacement.",
                ),
            },
        ),
        "details": (
            "The amount was {amount}.", "Order number {order}.", "Invoice {invoice}.",
            "The charge is dated {date}.", "Please send the refund to the card ending in {card4}.",
        ),
        "tried": (
            "I asked in the chat last week but didn't hear back.", "I checked my bank statement twice.",
            "I looked for a refund button in the dashboard but couldn't find one.",
        ),
        "asides": (
            "We got a refund once before and it took about a week.",
            "I don't need a refund for this, just want it fixed.",
        ),
    },
    "shipping_delay": {
        "weight": 0.10,
        "urgency": (0.01, 0.22, 0.50, 0.27),
        "enterprise": 0.10,
        "products": HARDWARE,
        "subjects": (
            "Where is my order?", "Order {order} not arrived", "Shipping delay", "Tracking hasn't updated",
            "Still waiting on our terminals", "Delivery ETA?", "order status {order}",
        ),
        "variants": (
            {
                "name": "status",
                "weight": 0.35,
                "subjects": ("No tracking email", "Change delivery address"),
                "problems": (
                    "Can you tell me the status of order {order}? I never got a tracking email.",
                    "Can I change the shipping address on order {order}? It hasn't shipped yet.",
                    "How long does shipping usually take to {city}? I ordered on {date}.",
                    "Just checking when order {order} is expected to ship.",
                    "Is there a way to see the tracking number for order {order} in the dashboard?",
                ),
            },
            {
                "name": "delayed",
                "weight": 0.65,
                "subjects": ("Package marked delivered but not here", "Partial delivery"),
                "problems": (
                    "We ordered {n_terms} {hw}s on {date} (order {order}) and they still haven't shipped.",
                    "Tracking number {tracking} hasn't updated in {days} days.",
                    "The order confirmation said 3-5 business days and it's now been {days} days.",
                    "The courier says the package was delivered but nothing arrived at {location}.",
                    "Only part of order {order} arrived; the {hw} is missing.",
                    "Our replacement {hw} was supposed to arrive last week and it's stuck in customs.",
                ),
            },
        ),
        "details": (
            "Order number is {order}.", "Tracking: {tracking}.", "Shipping address is {location} in {city}.",
            "We ordered on {date}.", "It was {n_terms} units in total.",
        ),
        "tried": (
            "I checked with the courier and they have no information.", "I asked our front desk and nobody signed for it.",
            "The tracking page just says 'label created'.",
        ),
        "asides": (
            "Our last order of scanners arrived on time.",
            "The package came a few days late but that's fine.",
            "The box arrived last week.",
        ),
    },
    "damaged_item": {
        "weight": 0.05,
        "urgency": (0.01, 0.24, 0.50, 0.25),
        "enterprise": 0.12,
        "products": HARDWARE,
        "subjects": (
            "Item arrived damaged", "Broken {hw}", "Cracked screen on new terminal", "DOA scanner",
            "Received wrong item", "Damaged in shipping", "New printer won't power on",
        ),
        "variants": (
            {
                "name": "damaged",
                "weight": 1.0,
                "subjects": ("Box was crushed",),
                "problems": (
                    "The {hw} from order {order} arrived with a cracked screen.",
                    "The box was crushed and the {hw} inside rattles when you move it.",
                    "Our new {hw} won't power on at all out of the box. Serial {serial}.",
                    "The card reader arrived with a bent charging port, it won't charge.",
                    "We received a receipt printer instead of the {hw} we ordered.",
                    "The scanner's charging cradle was snapped in two when we opened the box.",
                    "Out of the box the terminal shows a tamper screen ({error}) and won't boot.",
                    "The cash drawer arrived dented and the lock doesn't turn.",
                ),
            },
        ),
        "details": (
            "Serial number {serial}.", "Order {order}.", "I have photos of the box if needed.",
            "It arrived on {date}.", "The outer box looked fine.",
        ),
        "tried": (
            "We tried a different power outlet and cable.", "I held the power button for 30 seconds.",
            "We tried the spare charger from our other store.",
        ),
        "asides": (
            "The other units in the box were fine.",
            "One of our older terminals has a scratched screen but that's unrelated.",
        ),
    },
    "bug_report": {
        "weight": 0.125,
        "urgency": (0.02, 0.18, 0.50, 0.30),
        "enterprise": 0.14,
        "products": ("Harbor Sync app", "Harbor Cloud dashboard", "Harbor POS terminal", "Harbor Inventory"),
        "subjects": (
            "App crashes", "Bug in reports", "Sync app keeps crashing", "Receipts printing wrong totals",
            "Error {error} when saving a product", "Something is broken", "Discount not applied correctly",
            "glitch after update",
        ),
        "variants": (
            {
                "name": "defect",
                "weight": 0.75,
                "subjects": ("Crash on inventory screen", "Duplicated transactions in report"),
                "problems": (
                    "The {product} crashes every time I open the inventory screen.",
                    "When I apply a 10% discount the total on the receipt is off by a few cents.",
                    "The sales report for {month} shows duplicated transactions.",
                    "Editing a product and pressing save gives error {error}.",
                    "The Sync app shows items as out of stock even though inventory says {n_small} are left.",
                    "After the update to version {version} the tip screen no longer appears on the terminal.",
                    "Barcode scans from the {hw} enter the number twice.",
                    "Refunds issued on the terminal don't show up in the end-of-day report.",
                ),
            },
            {
                "name": "minor",
                "weight": 0.25,
                "subjects": ("Small display issue", "Typo on receipt"),
                "problems": (
                    "The exported CSV has dates in the wrong format.",
                    "The shift report shows UTC instead of our local time.",
                    "Our logo looks blurry on printed receipts.",
                    "There's a typo on the customer-facing receipt footer.",
                    "The dark text on the blue button is hard to read on the terminal.",
                ),
            },
        ),
        "details": (
            "App version {version}.", "Happens on {n_terms} of our devices.", "It started after the update on {date}.",
            "I can reproduce it every time.", "Screenshot attached.", "The error code is {error}.",
        ),
        "tried": (
            "I reinstalled the app.", "We restarted the iPad and the terminal.", "I logged out and back in.",
            "Cleared the app cache.",
        ),
        "asides": (
            "The app did crash once last week but it recovered.",
            "We're on app version {version}.",
            "I saw an error pop up briefly but it went away.",
        ),
    },
    "feature_request": {
        "weight": 0.05,
        "urgency": (0.00, 0.02, 0.28, 0.70),
        "enterprise": 0.20,
        "products": ("Harbor Cloud dashboard", "Harbor Sync app", "Harbor POS terminal", "Harbor Inventory"),
        "subjects": (
            "Suggestion for reports", "Would love dark mode", "Can you add multi-currency?", "Idea: split tips",
            "Please add export to Excel", "Wishlist item", "Any plans for offline mode?", "feature idea",
        ),
        "variants": (
            {
                "name": "idea",
                "weight": 1.0,
                "subjects": ("Request: scheduled price changes",),
                "problems": (
                    "It would be great if the {product} supported splitting tips between staff.",
                    "Could you add an option to export reports straight to Excel?",
                    "We'd love a dark mode on the terminal for our bar.",
                    "Is there any plan to support multiple currencies? We have a store in Canada.",
                    "Please let us schedule price changes in advance.",
                    "It would help if the Sync app could work offline and sync later.",
                    "Could the {integration} integration also sync customer notes?",
                    "Could you add permissions so cashiers can't issue refunds without a manager?",
                    "We'd like customizable receipt templates with our own logo.",
                ),
            },
        ),
        "details": (
            "Several of our staff have asked for this.", "A competitor we looked at has this.",
            "We'd use it every day.", "Happy to be a beta tester.",
        ),
        "tried": (
            "Right now we do it by hand in a spreadsheet.", "We use a workaround with {integration} for now.",
        ),
        "asides": (
            "It would also be nice to have dark mode someday.",
            "Otherwise we love the product.",
        ),
    },
    "account_closure": {
        "weight": 0.025,
        "urgency": (0.00, 0.08, 0.44, 0.48),
        "enterprise": 0.12,
        "products": ("Harbor Cloud", "Harbor Payments", "Harbor Sync app"),
        "subjects": (
            "Cancel my subscription", "Close account", "We're closing the business",
            "Stop billing and close account", "How do I cancel?", "cancel",
        ),
        "variants": (
            {
                "name": "cancel",
                "weight": 0.78,
                "subjects": ("Cancel at end of term",),
                "problems": (
                    "We're closing our store at the end of {month} and need to cancel our Harbor subscription.",
                    "Please close our account and stop all future charges.",
                    "I'd like to cancel; we've moved to another POS provider.",
                    "How do I cancel my plan? I can't find the option in settings.",
                    "We sold the business, so please close the account as of {date}.",
                    "We no longer need the {product}; please cancel at the end of the current billing period.",
                ),
            },
            {
                "name": "delete_data",
                "weight": 0.22,
                "subjects": ("Please delete my account and data",),
                "problems": (
                    "Please close my account and permanently delete all of my data, including customer records.",
                    "Close the account and confirm in writing that our card on file and all stored customer data have been erased.",
                    "I want my account and every piece of personal information you hold erased.",
                ),
            },
        ),
        "details": (
            "Account email is {email}.", "Our last day trading is {date}.", "We're on the {plan} plan.",
            "We have {n_terms} terminals we can send back.",
        ),
        "tried": (
            "I looked through the settings page but there's no cancel button.", "I emailed last week and got no reply.",
        ),
        "asides": (
            "We thought about cancelling last year but decided to stay.",
            "We're not planning to cancel or anything.",
        ),
    },
    "data_privacy": {
        "weight": 0.025,
        "urgency": (0.02, 0.22, 0.46, 0.30),
        "enterprise": 0.25,
        "products": ("Harbor Cloud", "Harbor Payments", "Harbor Cloud dashboard"),
        "subjects": (
            "GDPR data request", "Request for my personal data", "Privacy question", "Where is our data stored?",
            "Customer asked to be forgotten", "Possible data breach?",
        ),
        "variants": (
            {
                "name": "request",
                "weight": 0.45,
                "subjects": ("Subject access request",),
                "problems": (
                    "Under GDPR I'm requesting a copy of all personal data you hold about me ({email}).",
                    "A customer asked us to delete their data. How do we remove them from Harbor?",
                    "I keep getting marketing emails at {email} even though I unsubscribed.",
                    "Please tell us what personal data about our customers is shared with third parties.",
                ),
            },
            {
                "name": "compliance",
                "weight": 0.35,
                "subjects": ("Need a DPA", "Data retention policy"),
                "problems": (
                    "Where are our customers' card and purchase records stored, and for how long?",
                    "We need a signed DPA before our legal team will approve the renewal.",
                    "Is customer data encrypted at rest, and which region is it hosted in?",
                    "Our auditors are asking for Harbor's data retention policy.",
                ),
            },
            {
                "name": "incident",
                "weight": 0.20,
                "subjects": ("Received someone else's data",),
                "problems": (
                    "An ex-employee still seems to have access to our customer data exports.",
                    "I think a receipt with another customer's name and email was sent to me by mistake.",
                    "Customer phone numbers are showing up on the public receipt page.",
                ),
            },
        ),
        "details": (
            "Our privacy contact is {email}.", "This came up in our audit on {date}.", "We operate in the EU and UK.",
            "Please reply in writing.",
        ),
        "tried": (
            "I read the privacy policy but it doesn't answer this.", "I checked the settings for a data export option.",
        ),
        "asides": (
            "We are careful about customer data, so just flagging.",
            "Please don't share my email with anyone.",
        ),
    },
    "integration_api": {
        "weight": 0.06,
        "urgency": (0.05, 0.24, 0.48, 0.23),
        "enterprise": 0.22,
        "products": ("Harbor API", "Harbor webhooks", "Harbor Cloud"),
        "subjects": (
            "API returning {http}", "Webhook not firing", "{integration} sync broken", "Rate limit question",
            "OAuth token expires", "Orders not syncing to {integration}", "API question",
        ),
        "variants": (
            {
                "name": "api",
                "weight": 0.55,
                "subjects": ("Pagination issue on {endpoint}",),
                "problems": (
                    "Calls to {endpoint} started returning HTTP {http} on {date}.",
                    "Our webhook for order.created stopped firing even though our endpoint is up.",
                    "We get 429 rate limited at far fewer requests than the documented limit.",
                    "OAuth refresh tokens expire after an hour instead of 30 days.",
                    "The payload from {endpoint} is missing the tax field since the last release.",
                    "What is the right way to paginate {endpoint}? The cursor seems to repeat items.",
                ),
            },
            {
                "name": "connector",
                "weight": 0.45,
                "subjects": ("{integration} connection lost",),
                "problems": (
                    "The {integration} integration stopped syncing orders. The last sync was {date}.",
                    "Inventory counts in {integration} don't match Harbor after the nightly sync.",
                    "Reconnecting {integration} fails with error {error}.",
                    "Sales from the terminal show up twice in {integration}.",
                ),
            },
        ),
        "details": (
            "Request id {serial}.", "We're on API version 2.", "Response body: {error}.",
            "It worked fine until {date}.", "Our developer can share logs.",
        ),
        "tried": (
            "We regenerated the API key.", "Disconnected and reconnected the integration.",
            "We retried with exponential backoff.", "Tested it in the sandbox and it works there.",
        ),
        "asides": (
            "We also use the {integration} integration, which is working fine.",
            "Our developer set up the API connection last year.",
        ),
    },
    "performance_outage": {
        "weight": 0.07,
        "urgency": (0.22, 0.38, 0.30, 0.10),
        "enterprise": 0.12,
        "products": ("Harbor Cloud", "Harbor Cloud dashboard", "Harbor Sync app", "Harbor Payments"),
        "subjects": (
            "Dashboard very slow", "Site down?", "Harbor Cloud not loading", "Everything is slow today",
            "Reports take forever", "terminals offline",
        ),
        "variants": (
            {
                "name": "outage",
                "weight": 0.5,  # re-weighted by urgency in pick_variant
                "subjects": ("OUTAGE", "Cannot connect to Harbor", "Dashboard down"),
                "problems": (
                    "{product} won't load at all, we just get a {http} error page.",
                    "All our terminals show 'offline' and can't reach the server.",
                    "The dashboard is down for everyone in our company.",
                    "Nothing syncs. The status page says operational but it clearly isn't.",
                    "None of our stores can ring up sales, the terminals hang on 'connecting'.",
                ),
            },
            {
                "name": "slow",
                "weight": 0.5,
                "subjects": ("Slow reports", "Laggy app"),
                "problems": (
                    "The dashboard takes 30+ seconds to load each page.",
                    "Reports for {month} time out before they finish.",
                    "The Sync app has been really laggy since version {version}.",
                    "Checkout on the terminal takes about 10 seconds per sale at peak hours.",
                    "Search in the inventory screen takes forever with our {n_users} thousand products.",
                ),
            },
        ),
        "details": (
            "It started around {date}.", "Happens at {location} and our other locations.", "Our internet is fine.",
            "Error shown: {error}.", "Other websites load normally.",
        ),
        "tried": (
            "We restarted the router and the terminals.", "Tried on a phone hotspot, same thing.",
            "Checked the status page.",
        ),
        "asides": (
            "The dashboard was a bit slow yesterday too.",
            "The site was briefly down last month but that's not why I'm writing.",
        ),
    },
}

CATEGORY_NAMES = tuple(CATEGORIES)

# Which categories are easily confused with each other on a real desk: they
# borrow each other's asides and absorb each other's misfiled tickets.
SIBLINGS = {
    "login_access": ("account_closure", "data_privacy", "bug_report"),
    "billing_invoice": ("payment_failure", "refund_request", "account_closure"),
    "payment_failure": ("billing_invoice", "refund_request", "performance_outage"),
    "refund_request": ("billing_invoice", "payment_failure", "damaged_item"),
    "shipping_delay": ("damaged_item", "refund_request"),
    "damaged_item": ("shipping_delay", "refund_request", "bug_report"),
    "bug_report": ("performance_outage", "integration_api", "feature_request"),
    "feature_request": ("bug_report", "integration_api"),
    "account_closure": ("billing_invoice", "refund_request", "data_privacy"),
    "data_privacy": ("account_closure", "login_access"),
    "integration_api": ("bug_report", "performance_outage"),
    "performance_outage": ("bug_report", "integration_api", "payment_failure"),
}

# Problem statements that genuinely fit several categories: the desk files
# them one way or another, so no model should get these all right.
AMBIGUOUS_PROBLEMS = (
    (
        ("billing_invoice", "payment_failure", "refund_request"),
        (
            "We were charged {amount} but the dashboard says the payment failed.",
            "There's a charge of {amount} from Harbor on our card that I can't match to anything.",
            "Our card was charged twice this month.",
            "Something is off with our billing this month, the amounts don't add up.",
        ),
    ),
    (
        ("login_access", "account_closure", "data_privacy"),
        (
            "I need to remove a former employee from our account and make sure they can't see anything anymore.",
            "Our account is still under an owner email that isn't ours anymore.",
            "Please remove my email address from your system.",
        ),
    ),
    (
        ("bug_report", "performance_outage", "integration_api"),
        (
            "Orders are not showing up in the dashboard.",
            "Since this morning we keep getting error {error} and pages don't load properly.",
            "The data in the dashboard seems to be hours behind.",
            "The sync with our other systems keeps failing on and off.",
        ),
    ),
    (
        ("shipping_delay", "damaged_item", "refund_request"),
        (
            "Our {hw} order has been a mess and we want it sorted out.",
            "We still don't have a working {hw} from order {order}.",
            "The {hw} we ordered is not what we expected at all.",
        ),
    ),
    (
        ("damaged_item", "bug_report"),
        (
            "The new {hw} keeps rebooting by itself.",
            "The {hw} screen flickers and then goes black.",
        ),
    ),
    (
        ("feature_request", "bug_report", "integration_api"),
        (
            "The {integration} sync doesn't bring over discounts. Is that expected?",
            "Reports don't show tips per employee. Is this a bug or just not supported?",
        ),
    ),
    (
        ("payment_failure", "performance_outage"),
        (
            "Card payments are taking forever and sometimes time out.",
            "Payments hang on 'processing' for a minute before going through.",
        ),
    ),
)


def ambiguous_pool(category: str) -> list:
    """All ambiguous problem statements that could be filed under this category."""
    return [p for cats, problems in AMBIGUOUS_PROBLEMS if category in cats for p in problems]


# --------------------------------------------------------------------------
# Routing: queue depends on category, variant, segment and true urgency.
# --------------------------------------------------------------------------

DEFAULT_QUEUE = {
    ("login_access", "password"): "tier1_support",
    ("login_access", "locked"): "tier1_support",
    ("billing_invoice", "invoice"): "billing_ops",
    ("billing_invoice", "plan"): "billing_ops",
    ("payment_failure", "card"): "billing_ops",
    ("payment_failure", "terminal"): "billing_ops",
    ("refund_request", "money"): "billing_ops",
    ("refund_request", "return"): "logistics",
    ("shipping_delay", "status"): "tier1_support",
    ("shipping_delay", "delayed"): "logistics",
    ("damaged_item", "damaged"): "logistics",
    ("bug_report", "defect"): "engineering",
    ("bug_report", "minor"): "tier1_support",
    ("feature_request", "idea"): "product_feedback",
    ("account_closure", "cancel"): "tier1_support",
    ("data_privacy", "request"): "trust_and_safety",
    ("data_privacy", "compliance"): "trust_and_safety",
    ("integration_api", "api"): "engineering",
    ("integration_api", "connector"): "engineering",
    ("performance_outage", "slow"): "engineering",
}

# Security-sensitive work always goes to trust_and_safety, whoever the customer is.
SECURITY_VARIANTS = (
    ("login_access", "security"),
    ("payment_failure", "fraud"),
    ("account_closure", "delete_data"),
    ("data_privacy", "incident"),
)

# Categories where an enterprise customer is handled by their success team.
ENTERPRISE_ROUTED = (
    "login_access", "billing_invoice", "refund_request", "shipping_delay", "damaged_item",
    "bug_report", "feature_request", "account_closure", "data_privacy", "integration_api",
)


def route_queue(category: str, variant: str, enterprise: bool, urgency: str) -> str:
    """The queue a careful agent would pick (before misrouting noise)."""
    # Infrastructure incidents are an SRE matter regardless of segment.
    if category == "performance_outage" and variant == "outage":
        return "platform_sre"
    if category in ("payment_failure", "integration_api") and urgency == "P0":
        return "platform_sre"
    if (category, variant) in SECURITY_VARIANTS:
        return "trust_and_safety"
    if enterprise and category in ENTERPRISE_ROUTED:
        return "enterprise_success"
    return DEFAULT_QUEUE.get((category, variant), "tier1_support")


# --------------------------------------------------------------------------
# Shared text pieces
# --------------------------------------------------------------------------

GREETINGS = (
    "Hi,", "Hello Harbor team,", "Hi there,", "Good morning,", "Hey support,", "Dear Harbor Support,",
    "Hello,", "To whom it may concern,", "Hi team,", "Hey,",
)
CLOSINGS = (
    "Thanks in advance.", "Appreciate the help.", "Looking forward to hearing back.", "Cheers",
    "Thank you!", "Thanks", "Kind regards", "Any help appreciated.",
)
SIGNATURES = (
    "{name}", "{name}\n{company}", "-- {name}", "Sent from my iPhone", "{name} | {company} | {phone}",
    "{name}, owner, {company}", "{name}\n{company}\n{phone}",
)

ENTERPRISE_CUES = (
    "We're on the Enterprise plan ({seats} seats).",
    "Our account manager {am_name} suggested I write in.",
    "Per our SLA we expect a response within 4 hours.",
    "Contract no. {contract}.",
    "(Harbor Enterprise customer, contract {contract})",
    "I've cc'd our account manager, {am_name}.",
    "We have an enterprise agreement covering all {seats} seats.",
)
# Small-business context: mentions plans and store counts, but not Enterprise.
SMB_CUES = (
    "We're on the {plan} plan.",
    "We run {n_stores} stores.",
    "I own a small shop in {city}.",
    "We've been customers since {year}.",
    "We have {n_terms} terminals across two locations.",
)
# Confounder: non-enterprise customers who mention Enterprise in passing.
ENTERPRISE_DECOYS = (
    "We're thinking about moving to the Enterprise plan next year.",
    "Is an account manager included if we upgrade?",
)

URGENCY_CUES = {
    "P0": (
        "This is a full outage for us.",
        "We are losing revenue every minute this continues.",
        "All users are affected.",
        "Our stores are open right now and we can't take any payments.",
        "This is an emergency, please call me at {phone}.",
        "Production is down.",
        "The entire team is blocked, nothing works.",
        "Please escalate immediately.",
    ),
    "P1": (
        "We need this resolved today.",
        "This is blocking several of our staff.",
        "We have a deadline on {weekday}.",
        "Month-end close is tomorrow and we need this sorted.",
        "Please prioritise, it's affecting our customers.",
        "Our grand opening is on {date}.",
        "Need an answer before end of day.",
        "It's costing us sales, please look at it asap.",
    ),
    "P2": (
        "Would appreciate a reply this week.",
        "Let me know what you find.",
        "Please advise.",
        "Thanks for looking into it.",
    ),
    "P3": (
        "No rush on this.",
        "Whenever you get a chance.",
        "Not urgent at all, just curious.",
        "Low priority, just wanted to flag it.",
        "For future reference only.",
        "Take your time.",
    ),
}
# How often the true tier is actually cued in the text.
P_URGENCY_CUE = {"P0": 0.90, "P1": 0.70, "P2": 0.35, "P3": 0.70}

# Subjects that say nothing about the problem (the body must do the work).
GENERIC_SUBJECTS = (
    "Help", "Question", "Issue with my account", "Problem", "Support request", "Need help please",
    "Quick question", "Following up", "{company}", "Ticket from {company}", "Hello",
)

SHORT_BODIES = (
    "help!!", "see subject", "As per subject.", "pls help", "???", "Title says it all.",
    "Please call me back.", "details in subject", "Same problem again.",
)

# Generic paragraphs that pad long tickets; deliberately category-neutral.
BACKGROUND = (
    "Some background: we've been using Harbor since {year} across {n_stores} locations and overall it's been solid.",
    "Our setup is {n_terms} terminals, a couple of Dock scanners and the Sync app on iPads at the counter.",
    "I'm the operations manager, so I handle most of the admin for our team, but I'm not very technical.",
    "We're a family business and weekends are our busiest time, so anything that slows us down is noticed.",
    "I spoke to someone on chat about something similar a while back but I don't have the reference number anymore.",
    "Our previous provider was much harder to deal with, which is one reason we moved to Harbor in the first place.",
    "We have staff on early and late shifts, so sometimes problems are reported to me a day after they happen.",
)
IMPACT = (
    "It means our staff end up doing things manually and customers have to wait longer at the counter.",
    "It's been going on long enough that people in the team have started asking me about it every day.",
    "I'd really like to understand what is going on so we can stop it happening again.",
    "If you need more details, screenshots or access to the account, just let me know and I'll send them.",
    "I can be reached at {email} or on {phone} during opening hours.",
)


# --------------------------------------------------------------------------
# Composition
# --------------------------------------------------------------------------


def weighted_choice(rng: random.Random, items: tuple, weights: tuple):
    return rng.choices(items, weights=weights, k=1)[0]


def pick_variant(rng: random.Random, category: str, urgency: str) -> dict:
    """Choose a variant; for performance tickets severity drives outage vs slowness."""
    variants = CATEGORIES[category]["variants"]
    weights = [v["weight"] for v in variants]
    if category == "performance_outage":
        p_outage = {"P0": 0.9, "P1": 0.5, "P2": 0.1, "P3": 0.1}[urgency]
        weights = [p_outage if v["name"] == "outage" else 1 - p_outage for v in variants]
    return weighted_choice(rng, variants, tuple(weights))


def fill(template: str, values: dict) -> str:
    return template.format(**values)


def placeholders(template: str) -> list:
    """The "{name}" fields a template uses."""
    return ["{" + part.split("}")[0] + "}" for part in template.split("{")[1:]]


def make_subject(rng: random.Random, spec: dict, variant: dict, urgency: str, values: dict) -> str:
    """Subject line with desk-realistic styling (blank, lowercase, shouty, Re:)."""
    if rng.random() < P_EMPTY_SUBJECT:
        return ""
    if rng.random() < P_GENERIC_SUBJECT:
        pool = GENERIC_SUBJECTS
    else:
        pool = spec["subjects"] + variant["subjects"]
    subject = fill(rng.choice(pool), values)
    roll = rng.random()
    if urgency == "P0" and roll < 0.35:
        subject = subject.upper()
    elif roll < 0.04:
        subject = subject.upper()
    elif roll < 0.12:
        subject = subject.lower()
    if urgency == "P0" and rng.random() < 0.3:
        subject = "URGENT: " + subject
    elif urgency == "P1" and rng.random() < 0.12:
        subject = "Important: " + subject
    elif rng.random() < 0.05:
        subject = "Re: " + subject
    return subject


def segment_cue(rng: random.Random, enterprise: bool) -> str | None:
    """Sentence telling the agent who the customer is (the enterprise routing cue)."""
    if enterprise and rng.random() < P_ENTERPRISE_CUE:
        return rng.choice(ENTERPRISE_CUES)
    roll = rng.random()
    if roll < 0.03:
        return rng.choice(ENTERPRISE_DECOYS)
    if roll < 0.30:
        return rng.choice(SMB_CUES)
    return None


def core_sentences(rng: random.Random, category: str, variant: dict, enterprise: bool, urgency: str) -> list:
    """Problem, details, what was tried, asides and cues, in a plausible order."""
    spec = CATEGORIES[category]
    problems = list(variant["problems"])
    rng.shuffle(problems)
    if rng.random() < P_AMBIGUOUS:
        problems[0] = rng.choice(ambiguous_pool(category))
    sentences = [problems[0]]
    if rng.random() < 0.3 and len(problems) > 1:
        sentences.append(problems[1])
    n_details = rng.choice((0, 1, 1, 2))
    sentences += rng.sample(detail_source(rng, category)["details"], n_details)
    if rng.random() < 0.5:
        sentences.append(rng.choice(detail_source(rng, category)["tried"]))
    if rng.random() < P_ASIDE:
        sibling = rng.choice(SIBLINGS[category])
        sentences.insert(rng.randint(1, len(sentences)), rng.choice(CATEGORIES[sibling]["asides"]))
    if rng.random() < P_SECOND_ISSUE:
        sentences.append("Also, " + lower_first(second_issue(rng, category)))
    cue = segment_cue(rng, enterprise)
    if cue is not None:
        sentences.insert(rng.choice((0, len(sentences))), cue)
    if rng.random() < P_URGENCY_CUE[urgency]:
        # Escalations tend to lead; "no rush" is an afterthought.
        lead = urgency in ("P0", "P1") and rng.random() < 0.4
        sentences.insert(0 if lead else len(sentences), rng.choice(URGENCY_CUES[urgency]))
    return dedupe(sentences)


def detail_source(rng: random.Random, category: str) -> dict:
    """Usually the category's own spec; sometimes a sibling's (shared vocabulary)."""
    if rng.random() < P_BORROWED_DETAIL:
        return CATEGORIES[rng.choice(SIBLINGS[category])]
    return CATEGORIES[category]


def second_issue(rng: random.Random, category: str) -> str:
    """A problem statement from a sibling category: multi-issue tickets blur the label."""
    sibling = CATEGORIES[rng.choice(SIBLINGS[category])]
    variant = rng.choice(sibling["variants"])
    return rng.choice(variant["problems"])


def lower_first(sentence: str) -> str:
    # Keep placeholders and product names ("{product}", "Harbor ...", "I ...") intact.
    if sentence[:1] in "{I" or sentence.startswith(("Harbor", "Apple", "OAuth", "SAML", "SMS", "GDPR")):
        return sentence
    return sentence[0].lower() + sentence[1:]


def dedupe(sentences: list) -> list:
    """Drop repeated sentences (a detail and a cue can coincide), keeping order."""
    seen = []
    for s in sentences:
        if s not in seen:
            seen.append(s)
    return seen


def join_paragraph(rng: random.Random, sentences: list) -> str:
    """Most people write one paragraph; some put every sentence on its own line."""
    return ("\n" if rng.random() < 0.25 else " ").join(sentences)


def long_body_paragraphs(rng: random.Random, spec: dict, variant: dict, core: list) -> list:
    """Several paragraphs, > 128 tokens: background, the issue, what was tried, impact."""
    paragraphs = [" ".join(rng.sample(BACKGROUND, 2))]
    extra = [p for p in variant["problems"] if p not in core]
    paragraphs.append(" ".join(core + extra[:2]))
    tried = [t for t in spec["tried"] if t not in core] or list(spec["tried"])
    paragraphs.append("What we've tried so far: " + " ".join(rng.sample(tried, min(2, len(tried)))))
    paragraphs.append(" ".join(rng.sample(IMPACT, 3)))
    return paragraphs


def make_body(rng: random.Random, category: str, variant: dict, enterprise: bool, urgency: str, values: dict) -> str:
    spec = CATEGORIES[category]
    shape = rng.random()
    if shape < P_SHORT_BODY:
        return rng.choice(SHORT_BODIES)
    core = core_sentences(rng, category, variant, enterprise, urgency)
    if shape < P_SHORT_BODY + P_LONG_BODY:
        paragraphs = long_body_paragraphs(rng, spec, variant, core)
        middle = "\n\n".join(paragraphs)
    else:
        middle = join_paragraph(rng, core)
    parts = []
    if rng.random() < 0.75:
        parts.append(rng.choice(GREETINGS))
    parts.append(middle)
    if rng.random() < 0.6:
        parts.append(rng.choice(CLOSINGS))
    if rng.random() < 0.6:
        parts.append(rng.choice(SIGNATURES))
    separator = "\n\n" if rng.random() < 0.5 else "\n"
    return fill(separator.join(parts), values)


# --------------------------------------------------------------------------
# Typos
# --------------------------------------------------------------------------


def typo_word(rng: random.Random, word: str) -> str:
    """Swap two adjacent letters, drop one, or double one."""
    i = rng.randrange(1, len(word) - 1)
    op = rng.randrange(3)
    if op == 0:
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if op == 1:
        return word[:i] + word[i + 1:]
    return word[:i] + word[i] + word[i:]


def add_typos(rng: random.Random, text: str, n: int) -> str:
    """Typo up to n plain alphabetic words (placeholders/codes are left intact)."""
    tokens = text.split(" ")
    candidates = [i for i, t in enumerate(tokens) if t.isalpha() and len(t) >= 4]
    for i in rng.sample(candidates, min(n, len(candidates))):
        tokens[i] = typo_word(rng, tokens[i])
    return " ".join(tokens)


# --------------------------------------------------------------------------
# Tickets and labels
# --------------------------------------------------------------------------


def noisy_urgency(rng: random.Random, urgency: str) -> str:
    if rng.random() < URGENCY_NOISE:
        return rng.choice([t for t in URGENCY_TIERS if t != urgency])
    return urgency


def make_ticket(rng: random.Random) -> dict:
    """One labeled ticket with all the desk's noise."""
    category = weighted_choice(rng, CATEGORY_NAMES, tuple(CATEGORIES[c]["weight"] for c in CATEGORY_NAMES))
    spec = CATEGORIES[category]
    urgency = weighted_choice(rng, URGENCY_TIERS, spec["urgency"])
    variant = pick_variant(rng, category, urgency)
    enterprise = rng.random() < spec["enterprise"]
    values = fake_values(rng, spec["products"])

    subject = make_subject(rng, spec, variant, urgency, values)
    body = make_body(rng, category, variant, enterprise, urgency, values)
    # A one-liner body with no subject is unroutable; real tickets like that
    # get bounced back, so give them a subject.
    if len(body) < 25 and not subject:
        subject = fill(rng.choice(spec["subjects"]), values)
    if rng.random() < P_TYPOS:
        if subject and rng.random() < 0.25:
            subject = add_typos(rng, subject, 1)
        body = add_typos(rng, body, rng.randint(1, 3))

    queue = route_queue(category, variant["name"], enterprise, urgency)
    if rng.random() < QUEUE_NOISE:
        queue = rng.choice([q for q in QUEUES if q != queue])
    label_category = category
    if rng.random() < CATEGORY_NOISE:
        label_category = rng.choice(SIBLINGS[category])
    return {
        "subject": subject,
        "body": body,
        "category": label_category,
        "urgency": noisy_urgency(rng, urgency),
        "queue": queue,
    }


def mask_labels(rng: random.Random, row: dict) -> dict:
    """Blank each task's label independently (partial labels of a real desk)."""
    for task, coverage in LABEL_COVERAGE:
        if rng.random() >= coverage:
            row[task] = ""
    return row


def make_ids(rng: random.Random, n: int) -> list:
    """Unique, non-sequential ticket ids (sorted within a split for readability)."""
    return [f"HB-{i:06d}" for i in rng.sample(range(1, 1_000_000), n)]


def generate(seed: int) -> tuple:
    """Return ({split: rows}, samples) for a seed.  Pure function of the seed."""
    text_rng = random.Random(seed)
    mask_rng = random.Random(seed + 1)  # independent of text so coverage is unbiased
    id_rng = random.Random(seed + 2)
    sample_rng = random.Random(seed + 3)

    total = sum(n for _, n in SPLITS)
    ids = make_ids(id_rng, total)
    splits = {}
    start = 0
    for name, n in SPLITS:
        rows = []
        for ticket_id in sorted(ids[start:start + n]):
            row = {"id": ticket_id, **make_ticket(text_rng)}
            rows.append(mask_labels(mask_rng, row))
        splits[name] = rows
        start += n

    samples = [make_demo_ticket(sample_rng, *spec) for spec in SAMPLE_SPECS]
    return splits, samples


# One demo ticket per routing situation worth showing: (category, variant,
# enterprise customer?, true urgency, subject, a word picking the problem
# statement so subject and body agree).  Expected queue in the comment.
SAMPLE_SPECS = (
    ("performance_outage", "outage", False, "P0", "Terminals offline", "offline"),  # platform_sre
    ("login_access", "security", False, "P1", "Okta SSO error", "Okta"),  # trust_and_safety
    ("billing_invoice", "invoice", True, "P2", "Question about invoice {invoice}", "line item"),  # enterprise_success
    ("shipping_delay", "delayed", False, "P1", "Order {order} not arrived", "still haven't shipped"),  # logistics
    ("feature_request", "idea", False, "P3", "Would love dark mode", "dark mode"),  # product_feedback
    ("login_access", "password", False, "P2", "Password reset email never arrives", "never shows up"),  # tier1_support
    ("refund_request", "money", False, "P2", "Charged twice, please refund", "charged twice"),  # billing_ops
    ("integration_api", "api", False, "P1", "Webhook not firing", "webhook"),  # engineering
)


def make_demo_ticket(
    rng: random.Random, category: str, variant_name: str, enterprise: bool, urgency: str, subject: str, keyword: str
) -> dict:
    """A clear ticket for routing demos: no typos, asides or mixed issues."""
    spec = CATEGORIES[category]
    variant = [v for v in spec["variants"] if v["name"] == variant_name][0]
    problem = [p for p in variant["problems"] if keyword.lower() in p.lower()][0]
    values = fake_values(rng, spec["products"])
    sentences = [rng.choice(GREETINGS)]
    if enterprise:
        sentences.append(rng.choice(ENTERPRISE_CUES))
    # A detail that doesn't repeat a value the problem already states.
    details = [d for d in spec["details"] if not any(k in problem for k in placeholders(d))]
    sentences += [problem, rng.choice(details)]
    if urgency != "P2":
        sentences.append(rng.choice(URGENCY_CUES[urgency]))
    sentences += [rng.choice(CLOSINGS), rng.choice(("{name}", "{name}, {company}"))]
    return {"subject": fill(subject, values), "body": fill(" ".join(sentences), values)}


def sample_line(ticket: dict) -> str:
    """Subject — body on one line (whitespace, including newlines, collapsed)."""
    text = f"{ticket['subject']} — {ticket['body']}" if ticket["subject"] else ticket["body"]
    return " ".join(text.split())


def write_split(path: Path, rows: list) -> None:
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row[c] for c in COLUMNS])


def write_all(out_dir: Path, seed: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    splits, samples = generate(seed)
    for name, _ in SPLITS:
        write_split(out_dir / f"{name}.csv", splits[name])
    with (out_dir / "samples.txt").open("w", encoding="utf-8", newline="") as f:
        f.write("".join(sample_line(t) + "\n" for t in samples))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT_DIR)
    args = parser.parse_args(argv)
    write_all(Path(args.out_dir), args.seed)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
