"""A triage case of our own for the record heads (bench/records.py, programs/triage.prompt's data):
support tickets with a tag, an urgency, whether a person must handle it, and a suggested reply chosen
from a fixed set of templates.

Tickets are composed from hand-written phrase pools. Two disjoint sets of pools exist: `train` (the
wording the examples use) and `heldout` (other products, other phrasing), so held-out accuracy measures
new wording, not memorised sentences. The labelling rule is the one a support lead would write down:
- the tag is the ticket's topic;
- urgency is high when the customer is blocked or losing money now, low when they say it can wait;
- a person handles every high-urgency ticket and every legal threat or chargeback;
- the reply is the template for the tag, or the tag's escalation template when a person handles it.

`python bench/triage_case.py` rewrites programs/data/triage.jsonl (deterministic).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = {
    "train": {
        "billing": [
            ("Charged twice", "My card was charged twice for the March invoice."),
            ("Wrong invoice amount", "The invoice lists 14 seats but our team has 9 people."),
            ("Refund request", "We cancelled in the trial window and the yearly fee still went through; please refund it."),
            ("VAT missing", "Our invoice has no VAT number on it, so finance cannot book it."),
            ("Payment declined", "Your checkout keeps declining my company card although the bank approves it."),
            ("Still billed after cancel", "I cancelled last month but my card was charged again today."),
        ],
        "bug": [
            ("Export crashes", "The app closes every time I export a report to PDF."),
            ("Blank dashboard", "The dashboard shows an empty page since the last update."),
            ("Search broken", "Searching for a customer name returns no results even for exact matches."),
            ("Upload fails", "Uploading a CSV stops at 99 percent with an unknown error."),
            ("Wrong totals", "The monthly chart adds the same order twice in the totals."),
            ("Sync stuck", "Calendar sync has been stuck on 'pending' for two days."),
        ],
        "account": [
            ("Can't log in", "The password reset link never arrives in my inbox."),
            ("Change email", "I need to move my account to my new work email address."),
            ("Locked out", "My account got locked after I typed the wrong code from my phone."),
            ("Add a teammate", "How do I invite a colleague as an admin on our workspace?"),
            ("Delete my account", "Please close my account and remove my profile."),
            ("Two-factor lost phone", "I lost the phone with my authenticator app and cannot sign in."),
        ],
        "other": [
            ("Feature idea", "It would be great to have a dark mode for the editor."),
            ("Partnership", "We are a reseller and would like to talk about a partnership."),
            ("Office hours", "Are your support staff available on public holidays?"),
            ("Documentation", "Is there a guide for using the API from Python?"),
            ("Compliments", "Just wanted to say the new onboarding flow is lovely."),
            ("Event question", "Will you have a booth at the conference in Lyon?"),
        ],
    },
    "heldout": {
        "billing": [
            ("Double payment on order", "The shop took the subscription money two times this week."),
            ("Overcharged for plan", "We are on the basic plan but were billed the premium price."),
            ("Money back please", "The renewal went through by mistake and I want the amount returned."),
        ],
        "bug": [
            ("Printing is broken", "Printing an invoice gives a grey box instead of the document."),
            ("Notifications missing", "Push notifications stopped arriving on Android after the update."),
            ("Editor freezes", "Typing in the notes field freezes the whole browser tab."),
        ],
        "account": [
            ("Username change", "Could you rename my login from jdoe to jane.doe?"),
            ("Verification code never comes", "The SMS code for signing in never shows up on my phone."),
            ("Transfer ownership", "Our workspace owner left; please make me the owner instead."),
        ],
        "other": [
            ("Hiring question", "Are you hiring support engineers in Berlin?"),
            ("Product roadmap", "Do you plan to support offline mode next year?"),
            ("Thank you note", "Your team fixed my issue quickly last week, thanks a lot."),
        ],
    },
}

URGENCY = {
    "train": {
        "high": ["Our whole team is blocked right now.", "This is urgent, we are losing sales every hour.",
                 "Production is down because of this."],
        "normal": ["", "Thanks in advance.", "Could you take a look?"],
        "low": ["No rush, whenever you have time.", "This can wait until next week.", "Not urgent at all."],
    },
    "heldout": {
        "high": ["Nobody in the company can work until this is fixed.", "We need this solved immediately."],
        "normal": ["Kind regards.", "Let me know what you find."],
        "low": ["Low priority, just letting you know.", "Take your time with this one."],
    },
}

LEGAL = {"train": ["Otherwise I will file a chargeback with my bank.", "Our lawyer is in copy."],
         "heldout": ["I am considering legal action over this."]}

REPLIES = {
    ("billing", False): "Thanks for telling us about this charge. Our billing team will correct it within two business days.",
    ("billing", True): "We are sorry about this billing problem. A billing specialist is on it now and will contact you today.",
    ("bug", False): "Thanks for the report. We have logged the bug and will update you when a fix ships.",
    ("bug", True): "We are sorry this is blocking you. An engineer is looking at it now and will reply within the hour.",
    ("account", False): "Thanks for reaching out. Please follow the steps in your account settings; we have sent you a guide.",
    ("account", True): "We understand you cannot get in. An account specialist will verify your identity and call you today.",
    ("other", False): "Thanks for your message. We have passed it on to the right team.",
    ("other", True): "Thanks for your message. A member of our team will get back to you personally today.",
}


def ticket(split: str, rng: random.Random) -> dict:
    tag = rng.choice(sorted(TOPICS[split]))
    subject, body = rng.choice(TOPICS[split][tag])
    urgency = rng.choices(["high", "normal", "low"], weights=[1, 2, 1])[0]
    legal = rng.random() < 0.15
    extra = [rng.choice(URGENCY[split][urgency])] + ([rng.choice(LEGAL[split])] if legal else [])
    human = urgency == "high" or legal
    return {"input": {"ticket": {"subject": subject, "body": " ".join([body, *[e for e in extra if e]])}},
            "output": {"tag": tag, "urgency": urgency, "needs_human": human, "reply": REPLIES[(tag, human)]}}


def rows(split: str, n: int, seed: int) -> list[dict]:
    """n distinct tickets of `split`'s wording, in a seeded order."""
    rng = random.Random(f"{split}:{seed}")
    out, seen = [], set()
    for _ in range(n * 200):
        r = ticket(split, rng)
        key = json.dumps(r["input"], sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(r)
        if len(out) == n:
            return out
    raise ValueError(f"only {len(out)} distinct {split} tickets")


if __name__ == "__main__":
    path = Path(__file__).resolve().parent.parent / "programs" / "data" / "triage.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows("train", 90, 0)),
                    encoding="utf-8")
    print(f"wrote {path}")
