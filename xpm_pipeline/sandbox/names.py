"""Word pools for the data generator: realistic practice data, with the awkward characters real data has.

Several entries carry ``&``, apostrophes, ``<`` and non-ASCII letters (macrons, umlauts, ø, ł) on
purpose: a client that forgets to escape or decode them fails against the sandbox, not in production.
"""

PRACTICES = (
    "Hale & Partners Chartered Accountants", "Kōwhai Accounting Ltd", "Reyes Okafor & Co",
    "Northbridge Advisory", "Ōtaki Tax Collective", "Brennan O'Shea Accountants", "Fjord & Fell Bookkeeping",
    "Marlowe Whitfield LLP", "Søndergaard Business Services", "Tūī Street Accounting", "Ashby Müller Advisors",
    "Pōhutukawa Partners", "Greywacke & Associates", "Clearwater Chartered", "Mātai Financial",
)

FIRST_NAMES = (
    "Tom", "Ana", "Ben", "Zoë", "José", "Aroha", "Mere", "Liam", "Olivia", "Søren", "Łukasz", "Chloé", "Priya",
    "Wei", "Hemi", "Ngaio", "Björn", "Amélie", "Tāne", "Siobhán", "Noah", "Isla", "Jack", "Ruby", "Oliver",
    "Charlotte", "Mia", "Leo", "Harper", "Lucas", "Grace", "Mateo", "Aisha", "Sione", "Mei", "Ravi", "Fatima",
    "Kenji", "Yuki", "Elif", "Hannah", "Finn", "Ella", "Hugo", "Sofia", "Nikau", "Anahera", "Declan", "Maeve",
    "Rangi", "Lena", "Oskar", "Emma", "Samuel", "Georgia", "Arjun", "Ingrid", "Tamati", "Rosa", "Felix",
)

LAST_NAMES = (
    "Hale", "Reyes", "Okafor", "Nguyen", "Smith", "Brown", "Williams", "Taylor", "Wilson", "Müller", "O'Brien",
    "García", "Ngata", "Te Rangi", "Kowalski", "Andersen", "Dubois", "Patel", "Chen", "Kim", "Tanaka", "Walker",
    "Harris", "Clarke", "Robinson", "Wright", "Thompson", "White", "Fletcher", "Parata", "Søndergaard", "Åberg",
    "Fitzgerald", "MacLeod", "Novak", "Rossi", "Schmidt", "Kaur", "Singh", "Tuilagi", "Faleolo", "Henare",
    "Lindqvist", "Moreau", "Russo", "Yilmaz", "Murphy", "Kelly", "Campbell", "Stewart", "Hughes", "Edwards",
    "Bennett", "Ward", "Cooper", "Morgan", "Price", "Barnes", "Kennedy", "Doyle",
)

BUSINESS_PREFIXES = (
    "Harbour", "Summit", "Kauri", "Riverside", "Coastal", "Northern", "Bluegum", "Ironbark", "Tōtara",
    "Pōhutukawa", "Silver Fern", "Red Tussock", "Old Mill", "Highland", "Seaview", "Lakeside", "Greenfield",
    "Foxton", "Ashby", "Brightwater", "Crown", "Golden Bay", "Meadow", "Stonebridge", "Westgate", "Eastbrook",
    "Kererū", "Matariki", "Southern Cross", "Whitestone", "Blackball", "Takahē", "Rimu", "Alpine", "Bayview",
    "Clifton", "Driftwood", "Edgewater", "Fernhill", "Glenfield",
)

BUSINESS_TRADES = (
    "Joinery", "Plumbing", "Electrical", "Bakery", "Café", "Builders", "Landscaping", "Dental", "Veterinary Clinic",
    "Motors", "Logistics", "Roofing", "Pharmacy", "Design", "Consulting", "Engineering", "Brewing Co", "Orchards",
    "Dairy", "Vineyards", "Surveying", "Physio", "Print & Copy", "Cleaning Services", "Fitness", "Books & Coffee",
    "Fish & Chips", "Hair & Beauty", "Tiling", "Scaffolding",
)

BUSINESS_SUFFIXES = ("Ltd", "Limited", "Ltd", "& Sons Ltd", "Trust", "Partnership", "", "Holdings Ltd", "Group Ltd")

CITIES = (
    ("Nelson", "Nelson", "7010"), ("Wellington", "Wellington", "6011"), ("Auckland", "Auckland", "1010"),
    ("Ōtaki", "Wellington", "5512"), ("Christchurch", "Canterbury", "8011"), ("Dunedin", "Otago", "9016"),
    ("Whangārei", "Northland", "0110"), ("Tauranga", "Bay of Plenty", "3110"), ("Hamilton", "Waikato", "3204"),
    ("Napier", "Hawke's Bay", "4110"), ("Queenstown", "Otago", "9300"), ("Palmerston North", "Manawatū-Whanganui", "4410"),
)

STREETS = (
    "Trafalgar Street", "Hardy Street", "Lambton Quay", "Queen Street", "Colombo Street", "George Street",
    "Bank Street", "Devonport Road", "Victoria Street", "Marine Parade", "Shotover Street", "The Square",
)

# The firm's task list (task.api/list): sizes take the first N.
TASK_NAMES = (
    "Year-end review", "Annual accounts preparation", "Financial statements", "Income tax return", "GST return",
    "Provisional tax", "FBT return", "PAYE filing", "Payroll processing", "Bookkeeping", "Bank reconciliation",
    "Management accounts", "Budget & forecast", "Cash flow forecast", "Tax planning", "Company annual return",
    "Shareholder minutes", "Trust minutes", "Trust resolutions", "Client meeting", "Phone call",
    "Email correspondence", "Review & sign-off", "Partner review", "Manager review", "Data entry",
    "Accounts payable", "Accounts receivable", "Fixed asset register", "Depreciation schedule", "Stocktake review",
    "Audit planning", "Audit fieldwork", "Audit completion", "Due diligence", "Business valuation",
    "Restructure advice", "Estate planning", "Rental property schedule", "Home office claim", "KiwiSaver",
    "ACC levies", "Customs & excise", "Xero setup", "Software training", "Advisory session", "Board report",
    "KPI dashboard", "Grant application", "Loan application", "Insolvency review", "IRD correspondence",
    "Tax investigation", "Residential land withholding tax", "Overseas income", "Dividend imputation",
    "Working papers", "Admin", "Travel", "Disbursements",
)
NON_BILLABLE_TASKS = {"Admin", "Travel"}

# (type, name pattern, task names drawn first). {fy} FY26, {year} 2026, {month} Mar, {q} Q3.
JOB_TYPES = (
    ("Annual Accounts", "FY{fy} Accounts", ("Annual accounts preparation", "Year-end review", "Financial statements")),
    ("Tax Return", "Income Tax Return {year}", ("Income tax return", "Review & sign-off", "Provisional tax")),
    ("GST", "GST Return {month} {year}", ("GST return", "Bank reconciliation")),
    ("Payroll", "Payroll {month} {year}", ("Payroll processing", "PAYE filing", "KiwiSaver")),
    ("Bookkeeping", "Bookkeeping {q} {year}", ("Bookkeeping", "Bank reconciliation", "Data entry")),
    ("Advisory", "Advisory — Budget & Forecast {year}", ("Budget & forecast", "Advisory session", "Client meeting")),
    ("Audit", "Audit FY{fy}", ("Audit planning", "Audit fieldwork", "Audit completion")),
    ("Company Secretarial", "Annual Return {year}", ("Company annual return", "Shareholder minutes")),
)

TIME_NOTES = (
    "", "", "", "", "Asset register", "Bank rec & GST", "Réunion with client", "Payroll — fortnightly",
    "Follow up re: PAYE", "Year-end adjustments", "Call with Søren", "Checked P&L < budget", "Draft accounts",
    "Emails to client", "Reviewed working papers", "Queries from IRD", "Coded bank feeds", "Meeting @ client's office",
    "Prepared GST return", "Reconciled creditors", "Updated fixed assets", "Café receipts sorted", "Tax calc",
    "Partner review notes", "Résumé of changes for client", "Fixed Xero setup", "Ōtaki site visit",
    "Filed annual return", "Board pack prep", "Loan docs & covenants",
)

TASK_FOLDERS = ("", "", "", "Compliance", "Advisory", "Admin")
CLIENT_TYPES = (("Standard", "0.00", "DayOfMonth", 20), ("Monthly Billing", "0.00", "DayOfMonth", 20),
                ("Fixed Fee", "0.00", "WithinDays", 14), ("Quarterly Billing", "5.00", "DayOfMonth", 1))
REFERRALS = ("", "", "Website", "Referral — existing client", "Bank manager", "Google", "Networking event")
STRUCTURES = ("Company", "Sole Trader", "Partnership", "Trust", "Look-through Company")
POSITIONS = ("", "Director", "Owner", "Office Manager", "Bookkeeper", "Trustee", "Finance Manager")
