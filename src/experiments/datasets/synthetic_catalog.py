"""The tables behind the synthetic data set: categories, card programs, merchants and the company's rules.

Pure data, written from scratch for this project. The rules live in ``SCENARIOS``: a scenario says that a
merchant of a given *kind*, bought by one of ``departments`` on one of ``programs``, with a trip of one of
the ``trips`` kinds and an amount in ``[low, high]``, is booked to ``category``. Two scenarios of one kind
that book to different categories never overlap on all of these fields, so the label is a function of the
fields (a test checks it): the rules are learnable, yet the same merchant lands in different categories
depending on who buys, on which card and whether they are travelling, which a general embedding model
cannot know.
"""

from __future__ import annotations

from dataclasses import dataclass

from experiments.records import Category

CATALOG_VERSION = "2025.1"

CATEGORIES: tuple[Category, ...] = (
    Category(name="Software Licenses", description="Term or perpetual rights to use installed software."),
    Category(name="SaaS Subscriptions", description="Recurring fees for hosted business applications."),
    Category(name="Cloud Hosting & Infrastructure", description="Compute, storage and platform usage for products."),
    Category(name="Computer Hardware", description="Capital equipment: computers, servers and workstations."),
    Category(name="Small Equipment & Peripherals", description="Low-value devices and accessories, expensed."),
    Category(name="Hardware Repairs & Maintenance", description="Fixing or servicing existing equipment."),
    Category(name="IT Support Services", description="Outsourced helpdesk, device management and IT projects."),
    Category(name="Telecommunications & Internet", description="Mobile plans, data, broadband and phone lines."),
    Category(name="Team Meals", description="Food and drink shared by colleagues at their home location."),
    Category(name="Travel Meals", description="An employee's own meals while away on business."),
    Category(name="Client Entertainment", description="Hosting customers, prospects and partners."),
    Category(name="Client Gifts", description="Presents sent to customers and partners."),
    Category(name="Employee Perks & Wellness", description="Benefits, recognition and wellbeing for staff."),
    Category(name="Office Pantry & Snacks", description="Stocking kitchens: coffee, fruit, drinks and snacks."),
    Category(name="Team Offsites & Events", description="Internal gatherings, retreats and all-hands."),
    Category(name="Airfare", description="Flights, seat upgrades and baggage fees."),
    Category(name="Lodging", description="Hotel nights and short-term rentals."),
    Category(name="Ground Transportation", description="Taxis, rideshare, rail and rental cars."),
    Category(name="Conference Fees", description="Registration and tickets to attend industry events."),
    Category(name="Training & Certifications", description="Courses, workshops, coaching and exams."),
    Category(name="Marketing Events & Sponsorships", description="Booths, sponsorship packages and hosted events."),
    Category(name="Advertising & Paid Media", description="Paid campaigns on search, social and other media."),
    Category(name="Branded Merchandise & Swag", description="Logo apparel and promotional items."),
    Category(name="Market Research & Data", description="Analyst reports, market data and surveys."),
    Category(name="Recruiting & Hiring", description="Sourcing, interviewing and onboarding candidates."),
    Category(name="Legal Fees", description="Outside counsel, filings and legal advice."),
    Category(name="Professional Services", description="Consultants, accountants, auditors and contractors."),
    Category(name="Office Supplies", description="Stationery, paper, printer ink and desk items."),
    Category(name="Office Rent & Coworking", description="Leased space, desks and meeting rooms."),
    Category(name="Shipping & Postage", description="Couriers, freight and mail."),
    Category(name="Bank & Payment Processing Fees", description="Charges from banks and payment providers."),
)

# Departments, and the card programs each of them holds.
ENG, PRD, DS, IT = "Engineering", "Product", "Data Science", "IT"
SAL, CS, MKT, FIN = "Sales", "Customer Success", "Marketing", "Finance"
PPL, OPS, LEG, EXE = "People", "Operations", "Legal", "Executive"
DEPARTMENTS: tuple[str, ...] = (ENG, PRD, DS, IT, SAL, CS, MKT, FIN, PPL, OPS, LEG, EXE)

TECH = "Enterprise Technology Services"
ENGCARD = "Engineering Team Card"
FIELD = "Field Ops Card"
GTM = "Go-To-Market Programs"
TRAVEL = "Corporate Travel Card"
TEAM = "Team Budget 2025"
CULTURE = "People & Culture Fund"
TALENT = "Talent Acquisition Card"
WORK = "Workplace Operations"
FINOPS = "Finance Operations"
EXEC = "Executive Office Card"
COUNSEL = "Compliance & Counsel Card"
LND = "Learning & Development Fund"
HOSP = "Customer Hospitality"

_SHARED = (TEAM, TRAVEL, LND)
DEPARTMENT_PROGRAMS: dict[str, tuple[str, ...]] = {
    ENG: (ENGCARD, TECH, *_SHARED),
    PRD: (ENGCARD, *_SHARED),
    DS: (ENGCARD, TECH, *_SHARED),
    IT: (TECH, *_SHARED),
    SAL: (FIELD, GTM, HOSP, *_SHARED),
    CS: (FIELD, HOSP, *_SHARED),
    MKT: (GTM, *_SHARED),
    FIN: (FINOPS, *_SHARED),
    PPL: (CULTURE, TALENT, *_SHARED),
    OPS: (WORK, CULTURE, *_SHARED),
    LEG: (COUNSEL, *_SHARED),
    EXE: (EXEC, HOSP, CULTURE, *_SHARED),
}

# Cost centres for ``SyntheticTransactions(cost_centres=True)``: every category splits into one sub-account per
# cost centre that can book it ("Team Meals - Engineering", "Team Meals - Sales", ...), as a real chart of
# accounts does. Siblings share their parent's name and description: near-synonyms that only the department
# line of the transaction tells apart.
COST_CENTRES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Engineering", (ENG,)),
    ("Product & Data", (PRD, DS)),
    ("IT", (IT,)),
    ("Sales", (SAL,)),
    ("Customer Success", (CS,)),
    ("Marketing", (MKT,)),
    ("Finance & Legal", (FIN, LEG)),
    ("Operations & Executive", (OPS, EXE)),
    ("People", (PPL,)),
)

ALL = DEPARTMENTS
TECHIES = (ENG, PRD, DS, IT)
CLIENT_FACING = (SAL, CS, EXE)
BUSINESS = (SAL, CS, MKT, FIN, PPL, OPS, LEG, EXE)
# Programs that pay for day-to-day and travel spend (not the central or purpose-bound funds).
EVERYDAY = (TEAM, ENGCARD, FIELD, GTM, FINOPS, COUNSEL, EXEC, WORK)
TRAVELLING = (TRAVEL, TEAM, FIELD, ENGCARD, GTM, FINOPS, COUNSEL, EXEC)

OFFICES: tuple[str, ...] = (
    "Austin, US",
    "Berlin, DE",
    "London, GB",
    "San Francisco, US",
    "Dublin, IE",
    "Toronto, CA",
)
TRIP_CITIES: tuple[str, ...] = (
    "Chicago, US",
    "New York, US",
    "Boston, US",
    "Seattle, US",
    "Paris, FR",
    "Amsterdam, NL",
    "Munich, DE",
    "Madrid, ES",
    "Tokyo, JP",
    "Singapore, SG",
    "Sydney, AU",
    "Stockholm, SE",
)
OFFSITE_CITIES: tuple[str, ...] = (
    "Lisbon, PT",
    "Barcelona, ES",
    "Denver, US",
    "Edinburgh, GB",
    "Mallorca, ES",
)
TRIP_PURPOSES: dict[str, tuple[str, ...]] = {
    "tech": (
        "Platform Architecture Review",
        "DevWorld 2025",
        "Customer Integration Onsite",
        "Data Center Migration",
        "KubeSummit EU",
    ),
    "client": (
        "Q3 Customer Summit",
        "Enterprise Renewal Visit",
        "Partner QBR",
        "Regional Sales Kickoff",
        "Strategic Account Review",
    ),
    "marketing": ("Product Launch Tour", "Trade Show Support", "Analyst Day", "Brand Shoot"),
    "admin": ("Board Meeting", "Audit Fieldwork", "Office Opening", "Leadership Summit"),
    "people": ("Campus Hiring Tour", "Recruiting Roadshow", "Leadership Summit", "Office Opening"),
}
DEPARTMENT_TRIP_GROUP: dict[str, str] = {
    **dict.fromkeys(TECHIES, "tech"),
    **dict.fromkeys((SAL, CS), "client"),
    MKT: "marketing",
    **dict.fromkeys((FIN, OPS, LEG, EXE), "admin"),
    PPL: "people",
}
OFFSITE_TEAMS: tuple[str, ...] = ("Platform Team", "GTM", "Leadership", "Company", "Data Team", "Product Org")


@dataclass(frozen=True)
class Merchant:
    """A merchant as the card network reports it; ``hq`` is the billing location of an online business."""

    name: str
    mcc: tuple[str, ...]
    hq: str | None = None


def _m(mcc: tuple[str, ...], *entries: str | tuple[str, str]) -> tuple[Merchant, ...]:
    """Merchants sharing one MCC list; a ``(name, hq)`` pair marks an online business."""
    out = []
    for entry in entries:
        name, hq = (entry, None) if isinstance(entry, str) else entry
        out.append(Merchant(name=name, mcc=mcc, hq=hq))
    return tuple(out)


_RESTAURANT = ("Eating Places, Restaurants",)
_BAR = ("Eating Places, Restaurants", "Drinking Places (Alcoholic Beverages)")
_NETWORK = ("Computer Network/Information Services",)
_BUSINESS = ("Business Services (Not Elsewhere Classified)",)
_SOFTWARE = ("Computer Software Stores",)
_REPAIR = ("Computer Maintenance, Repair and Services",)

MERCHANTS: dict[str, tuple[Merchant, ...]] = {
    "restaurant": _m(_RESTAURANT, "Osteria Bellavista", "Sakura Garden", "Taqueria El Sol", "Spice Route")
    + _m(_BAR, "The Copper Pot", "Harbor Grill", "Smokehouse 52", "Brasserie Lumiere"),
    "cafe": _m(("Fast Food Restaurants",), "Fresh Press", "Bagel Brothers", "Green Bowl Kitchen")
    + _m(("Bakeries",), "Crumb & Co", "Bluestone Coffee Roasters"),
    "caterer": _m(("Caterers",), "Feast & Co", "Platter Perfect", "Fork in the Road", "Long Table Events"),
    "grocery": _m(("Grocery Stores, Supermarkets",), "FreshCart", "Whole Harvest Market")
    + _m(("Wholesale Clubs",), "Bulkmart Wholesale", ("Snackwell Box", "Chicago, US")),
    "cloud": _m(
        _NETWORK,
        ("Nimbus Web Services", "Seattle, US"),
        ("Azurite Compute", "Dublin, IE"),
        ("Sentrio Monitoring", "San Francisco, US"),
    )
    + _m(("Data Processing Services",), ("Stratus Platform", "Dublin, IE"), ("Cumulus Data", "Bozeman, US")),
    "software": _m(
        _SOFTWARE,
        ("JetForge", "Prague, CZ"),
        ("Pixelsmith", "San Jose, US"),
        ("Macrosoft Store", "Dublin, IE"),
        ("Autodraft", "San Rafael, US"),
        ("Vizual Analytics", "Seattle, US"),
    ),
    "saas": _m(
        _NETWORK,
        ("Slackline", "Dublin, IE"),
        ("Notionary", "San Francisco, US"),
        ("Figmint", "San Francisco, US"),
        ("Hubstack", "Dublin, IE"),
    )
    + _m(_BUSINESS, ("Zoomly", "San Jose, US"), ("Ledgerly", "Auckland, NZ"), ("Calendlo", "Atlanta, US")),
    "marketplace": _m(
        ("Miscellaneous General Merchandise",), ("Amazonia Marketplace", "Seattle, US"), "Everymart Online"
    ),
    "electronics": _m(("Electronics Stores",), "Voltline Electronics", "Pomme Store", "MicroByte Center")
    + _m(
        ("Computers, Computer Peripheral Equipment, Software",),
        ("Dellwood Direct", "Round Rock, US"),
        ("Lenwood Business", "Morrisville, US"),
    ),
    "repair": _m(("Electronics Repair Shops",), "FixPoint", "Screen Savers")
    + _m(_REPAIR, "iDoctor Device Clinic", "ByteMedics"),
    "msp": _m(_REPAIR, "Bluebridge Managed IT", "Northwind IT Partners", "Sysguard")
    + _m(_BUSINESS, ("Helpdeskers GmbH", "Berlin, DE")),
    "telecom": _m(
        ("Telecommunication Services",),
        ("Telvora Mobile", "London, GB"),
        ("GlobeTalk eSIM", "Singapore, SG"),
        ("SkyLink Inflight", "Chicago, US"),
    )
    + _m(("Cable, Satellite and Other Pay Television and Radio Services",), "Streamline Fiber"),
    "airline": _m(
        ("Airlines, Air Carriers",),
        "Aerolux",
        "SkyBridge Airways",
        "Pacific Crest Air",
        "Nordwind Air",
        "Jetstream Express",
    ),
    "hotel": _m(("Hotels, Motels, Resorts",), "Meridian Suites", "Harborview Hotel", "Parkside Inn")
    + _m(("Lodging - Hotels, Motels, Resorts",), ("Nomad Stays", "San Francisco, US")),
    "ground": _m(("Taxicabs and Limousines",), "Rydr", "Hopp", "CityCab")
    + _m(("Car Rental Agencies",), "Velo Car Rental")
    + _m(("Passenger Railways",), "RailConnect"),
    "conference": _m(
        ("Membership Organizations",), ("DevWorld", "Amsterdam, NL"), ("Northern Tech Week", "Helsinki, FI")
    )
    + _m(_BUSINESS, ("KubeSummit", "San Francisco, US"), ("ScaleUp Summit", "London, GB"), "Ticketlane Events"),
    "elearning": _m(
        ("Schools and Educational Services",), ("Coursely", "San Francisco, US"), ("SkillForge", "Boston, US")
    )
    + _m(("Correspondence Schools",), ("CertPath Testing", "Minneapolis, US"), ("LinguaLeap", "Berlin, DE")),
    "advertising": _m(
        ("Advertising Services",),
        ("Searchly Ads", "Dublin, IE"),
        ("ProNet", "Sunnyvale, US"),
        ("Facegram Ads", "Dublin, IE"),
        ("Podwave Audio", "New York, US"),
    ),
    "law": _m(
        ("Legal Services, Attorneys",),
        "Hartwell & Stone LLP",
        "Ostrander Kline LLP",
        "Fieldgate Immigration Law",
        "Marlow Visa Partners",
    ),
    "consulting": _m(("Accounting, Auditing and Bookkeeping Services",), "Ledger & Row CPAs", "Pennant Audit")
    + _m(
        ("Management, Consulting and Public Relations Services",),
        "Northgate Consulting",
        "Summit Peak Partners",
    ),
    "research": _m(_BUSINESS, ("Quadrant Research", "Stamford, US"), ("Forrestal Insights", "Cambridge, US"))
    + _m(_NETWORK, ("Datapoint", "Hamburg, DE"), ("PitchDeck Data", "Seattle, US")),
    "office_supply": _m(
        ("Stationery, Office Supplies, Printing and Writing Paper",), "Paperclip Depot", "Inkwell Stationers"
    )
    + _m(("Office, School Supply and Stationery Stores",), "Deskline Supply"),
    "coworking": _m(
        ("Real Estate Agents and Managers - Rentals",),
        "Commonplace Coworking",
        "Hubspace Offices",
        "Desk & Co Workspaces",
    ),
    "shipping": _m(("Courier Services",), "Parcelwise", "Expedo Express", "Shipbox Freight")
    + _m(("Postal Services - Government Only",), "National Post Office"),
    "swag": _m(("Commercial Printing",), ("PrintPeak", "Chicago, US"), "InkHaus")
    + _m(("Miscellaneous Specialty Retail",), ("Swagsmith", "Denver, US"), ("Brandwell Promo", "Leeds, GB")),
    "gifts": _m(("Florists",), "Bloom & Stem")
    + _m(("Gift, Card, Novelty and Souvenir Shops",), ("GiftHive", "Portland, US"), ("Boxfolio", "Austin, US"))
    + _m(("Package Stores - Beer, Wine and Liquor",), "Vintner's Cellar"),
    "wellness": _m(("Membership Clubs (Sports, Recreation, Athletic)",), "Corefit Gym", ("FlexPass", "New York, US"))
    + _m(("Health and Beauty Spas",), ("Stillpoint Meditation", "Santa Monica, US")),
    "activities": _m(("Amusement Parks, Carnivals, Circuses",), "Escape Room Co", "Go Kart Arena")
    + _m(("Bowling Alleys",), "Strike Lanes")
    + _m(("Theatrical Producers, Ticket Agencies",), "Stadium Box Office"),
    "payments": _m(
        ("Financial Institutions - Merchandise and Services",),
        ("Adyena", "Amsterdam, NL"),
        "First Harbor Bank",
        ("Wisely Transfers", "London, GB"),
    )
    + _m(_BUSINESS, ("Stripeline", "San Francisco, US"), ("PayFlux", "Berlin, DE")),
    "staffing": _m(("Employment Agencies and Temporary Help Services",), "Hirewell Staffing", "Talentbridge Search")
    + _m(_BUSINESS, ("Verity Background Checks", "Denver, US"), ("Staffly", "London, GB")),
}

NONE, TRIP, OFFSITE = "none", "trip", "offsite"


@dataclass(frozen=True)
class Scenario:
    """One company rule: spend matching every field is booked to ``category``."""

    kind: str
    category: str
    departments: tuple[str, ...]
    programs: tuple[str, ...]
    trips: tuple[str, ...]
    low: float
    high: float
    merchants: tuple[str, ...] | None = None
    weight: float = 1.0

    def pairs(self) -> list[tuple[str, str]]:
        """The (department, program) pairs this rule covers, in declaration order."""
        return [(d, p) for d in self.departments for p in DEPARTMENT_PROGRAMS[d] if p in self.programs]


S = Scenario
SCENARIOS: tuple[Scenario, ...] = (
    # Meals: who buys, on which card and whether on a trip decides the account.
    S("restaurant", "Travel Meals", ALL, (*TRAVELLING, WORK), (TRIP,), 12, 160, weight=2),
    S("restaurant", "Client Entertainment", CLIENT_FACING, (FIELD, HOSP, EXEC), (NONE,), 80, 950, weight=2),
    S("restaurant", "Client Entertainment", CLIENT_FACING, (HOSP,), (TRIP,), 120, 1200),
    S(
        "restaurant",
        "Team Meals",
        ALL,
        (TEAM, ENGCARD, GTM, FINOPS, COUNSEL, WORK),
        (NONE,),
        45,
        650,
        weight=2,
    ),
    S("restaurant", "Team Offsites & Events", ALL, (TEAM, CULTURE, TRAVEL), (OFFSITE,), 150, 3000),
    S("restaurant", "Team Offsites & Events", (PPL, OPS, EXE), (CULTURE,), (NONE,), 300, 4000),
    S("restaurant", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE,), 40, 300),
    S("cafe", "Travel Meals", ALL, TRAVELLING, (TRIP,), 4, 45),
    S("cafe", "Team Meals", ALL, (TEAM, ENGCARD, GTM, FINOPS, COUNSEL), (NONE,), 20, 220),
    S("cafe", "Office Pantry & Snacks", (OPS,), (WORK,), (NONE,), 30, 400),
    S("cafe", "Client Entertainment", CLIENT_FACING, (FIELD, HOSP), (NONE,), 15, 120),
    S("caterer", "Team Meals", ALL, (TEAM, ENGCARD, FINOPS, COUNSEL), (NONE,), 180, 1400),
    S("caterer", "Team Offsites & Events", ALL, (CULTURE,), (NONE,), 600, 6000),
    S("caterer", "Team Offsites & Events", ALL, (TEAM, TRAVEL, CULTURE), (OFFSITE,), 500, 5000),
    S("caterer", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE,), 250, 1800),
    S("caterer", "Marketing Events & Sponsorships", (MKT, SAL), (GTM,), (NONE,), 800, 9000),
    S("caterer", "Office Pantry & Snacks", (OPS,), (WORK,), (NONE,), 200, 1500),
    S("grocery", "Office Pantry & Snacks", (OPS,), (WORK,), (NONE,), 40, 900, weight=2),
    S("grocery", "Employee Perks & Wellness", (PPL, EXE), (CULTURE,), (NONE,), 30, 600),
    S("grocery", "Team Meals", ALL, (TEAM,), (NONE,), 20, 250),
    S("grocery", "Travel Meals", ALL, (TRAVEL, TEAM, FIELD), (TRIP,), 5, 80),
    # Technology: the same vendor is infrastructure, a licence or a subscription depending on buyer and card.
    S("cloud", "Cloud Hosting & Infrastructure", TECHIES, (TECH, ENGCARD), (NONE,), 40, 28000, weight=3),
    S("cloud", "SaaS Subscriptions", BUSINESS, (TEAM, GTM, FINOPS, WORK, COUNSEL, FIELD), (NONE,), 15, 900),
    S("cloud", "Training & Certifications", ALL, (LND,), (NONE,), 80, 400),
    S("software", "Software Licenses", (IT, ENG, DS), (TECH,), (NONE,), 900, 24000, weight=2),
    S(
        "software",
        "SaaS Subscriptions",
        ALL,
        (TEAM, ENGCARD, GTM, FINOPS, FIELD, COUNSEL, WORK),
        (NONE,),
        9,
        450,
    ),
    S("saas", "SaaS Subscriptions", ALL, (*EVERYDAY, CULTURE), (NONE,), 8, 3000, weight=2),
    S("saas", "Software Licenses", (IT,), (TECH,), (NONE,), 4000, 48000),
    S("saas", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE,), 200, 6000),
    S("marketplace", "Small Equipment & Peripherals", TECHIES, (TEAM, ENGCARD, TECH), (NONE,), 12, 950),
    S("marketplace", "Computer Hardware", TECHIES, (TECH, ENGCARD, TEAM), (NONE,), 1000, 3800),
    S("marketplace", "Office Supplies", BUSINESS, EVERYDAY, (NONE,), 6, 350, weight=2),
    S("marketplace", "Employee Perks & Wellness", (PPL, EXE, OPS), (CULTURE,), (NONE,), 15, 400),
    S("electronics", "Computer Hardware", ALL, (TECH, *EVERYDAY), (NONE,), 1000, 4900, weight=3),
    S("electronics", "Small Equipment & Peripherals", ALL, (TECH, *EVERYDAY), (NONE,), 19, 990, weight=2),
    S("electronics", "Client Gifts", CLIENT_FACING, (HOSP,), (NONE,), 80, 600),
    S("repair", "Hardware Repairs & Maintenance", ALL, (TECH, *EVERYDAY), (NONE, TRIP), 35, 950, weight=2),
    S("msp", "IT Support Services", (IT, OPS), (TECH, WORK), (NONE,), 400, 12000, weight=3),
    S(
        "msp",
        "Hardware Repairs & Maintenance",
        ALL,
        (TEAM, ENGCARD, FIELD, GTM, FINOPS, COUNSEL),
        (NONE,),
        60,
        390,
    ),
    S("telecom", "Telecommunications & Internet", ALL, (TECH, *TRAVELLING), (NONE, TRIP), 12, 900, weight=3),
    S("telecom", "Employee Perks & Wellness", (PPL, OPS, EXE), (CULTURE,), (NONE,), 30, 90),
    # Travel: the trip decides, and an offsite is booked centrally as an event.
    S("airline", "Airfare", ALL, TRAVELLING, (TRIP, OFFSITE), 59, 2400, weight=3),
    S("airline", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE,), 120, 950),
    S("hotel", "Lodging", ALL, TRAVELLING, (TRIP,), 95, 2600, weight=3),
    S("hotel", "Team Offsites & Events", ALL, (TEAM, TRAVEL, CULTURE), (OFFSITE,), 900, 14000),
    S("hotel", "Team Offsites & Events", (PPL, OPS, EXE), (CULTURE,), (NONE,), 1000, 9000),
    S("hotel", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE,), 110, 700),
    S("hotel", "Client Entertainment", CLIENT_FACING, (HOSP,), (NONE,), 200, 2000),
    S("ground", "Ground Transportation", ALL, TRAVELLING, (TRIP, OFFSITE), 7, 650, weight=3),
    S("ground", "Ground Transportation", ALL, EVERYDAY, (NONE,), 7, 95),
    S("ground", "Employee Perks & Wellness", (PPL, OPS, EXE), (CULTURE,), (NONE,), 40, 250),
    S("ground", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE,), 10, 120),
    # Events and learning: the fund that pays decides between a ticket, a course and a sponsorship.
    S(
        "conference",
        "Conference Fees",
        tuple(d for d in ALL if d != MKT),
        TRAVELLING,
        (NONE, TRIP),
        90,
        2900,
        weight=3,
    ),
    S(
        "conference",
        "Marketing Events & Sponsorships",
        (MKT,),
        (GTM, TEAM, TRAVEL),
        (NONE, TRIP),
        2000,
        45000,
        weight=2,
    ),
    S("conference", "Training & Certifications", ALL, (LND,), (NONE, TRIP), 60, 1500, weight=2),
    S("conference", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE, TRIP), 300, 4000),
    S("elearning", "Training & Certifications", ALL, (LND, TEAM, ENGCARD), (NONE,), 12, 2500, weight=2),
    S("elearning", "Employee Perks & Wellness", (PPL, OPS, EXE), (CULTURE,), (NONE,), 8, 250),
    S("advertising", "Advertising & Paid Media", (MKT,), (GTM, TEAM), (NONE,), 150, 35000, weight=3),
    S("advertising", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE,), 150, 6000),
    S("advertising", "SaaS Subscriptions", (SAL, CS), (FIELD,), (NONE,), 79, 1800, ("ProNet",)),
    S(
        "advertising",
        "Marketing Events & Sponsorships",
        (MKT,),
        (TRAVEL,),
        (TRIP,),
        500,
        8000,
        ("Podwave Audio",),
    ),
    S("law", "Legal Fees", (LEG, EXE, FIN), (COUNSEL, EXEC, FINOPS), (NONE,), 450, 38000, weight=3),
    S("law", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE,), 900, 7000),
    S("consulting", "Professional Services", ALL, (TECH, *EVERYDAY), (NONE,), 1200, 45000, weight=3),
    S("consulting", "Training & Certifications", ALL, (LND,), (NONE,), 1500, 9000),
    S("research", "Market Research & Data", (MKT, SAL, PRD, EXE, FIN, CS), EVERYDAY, (NONE,), 40, 26000),
    S("office_supply", "Office Supplies", ALL, EVERYDAY, (NONE,), 4, 380, weight=2),
    S("office_supply", "Small Equipment & Peripherals", TECHIES, (TECH,), (NONE,), 25, 600),
    S("coworking", "Office Rent & Coworking", ALL, (WORK, TEAM, FIELD, ENGCARD), (NONE, TRIP), 25, 16000),
    S("coworking", "Team Offsites & Events", ALL, (TEAM, TRAVEL, CULTURE), (OFFSITE,), 400, 5000),
    S("shipping", "Shipping & Postage", ALL, (TECH, *EVERYDAY), (NONE,), 4, 850),
    S("swag", "Branded Merchandise & Swag", ALL, (TEAM,), (NONE,), 150, 4000),
    S("swag", "Branded Merchandise & Swag", (MKT,), (GTM,), (NONE,), 300, 9000, weight=2),
    S("swag", "Employee Perks & Wellness", (PPL, EXE, OPS), (CULTURE,), (NONE,), 90, 3500),
    S("swag", "Client Gifts", CLIENT_FACING, (FIELD, HOSP, EXEC), (NONE,), 60, 1600),
    S("swag", "Recruiting & Hiring", (PPL,), (TALENT,), (NONE,), 150, 2500),
    S("gifts", "Client Gifts", CLIENT_FACING, (FIELD, HOSP, EXEC), (NONE,), 35, 900, weight=2),
    S("gifts", "Employee Perks & Wellness", ALL, (CULTURE, TEAM), (NONE,), 20, 400),
    S("wellness", "Employee Perks & Wellness", ALL, (CULTURE, *EVERYDAY), (NONE,), 9, 300, weight=2),
    S("activities", "Team Offsites & Events", ALL, (TEAM, CULTURE), (NONE, OFFSITE), 150, 3500),
    S("activities", "Client Entertainment", CLIENT_FACING, (FIELD, HOSP, EXEC), (NONE,), 120, 2500),
    S("payments", "Bank & Payment Processing Fees", (FIN,), (FINOPS,), (NONE,), 1.5, 4200),
    S("payments", "SaaS Subscriptions", (ENG, PRD), (ENGCARD, TEAM), (NONE,), 25, 900),
    S(
        "staffing",
        "Recruiting & Hiring",
        ALL,
        (TALENT, TEAM, ENGCARD, FIELD, GTM),
        (NONE,),
        90,
        24000,
        weight=2,
    ),
    S("staffing", "Professional Services", (OPS, FIN), (WORK, FINOPS), (NONE,), 800, 15000),
)
