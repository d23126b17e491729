// The console's pages, in menu order. `roles` hides a page from roles the admin API would refuse
// it to anyway (the API decides; this only keeps the menu honest).
import { overview, usage, requests, dlp, limits } from "./ops.js";
import { people, keys, models } from "./directory.js";
import { audit, alerts } from "./trail.js";

// Pages built on the organisation-wide views (/insights, refused to roles scoped to some groups or
// to oneself) are shown to org admins and auditors; keys and usage to everyone, each reading what
// their role reaches (a developer: /me/keys and /me/usage; a group admin: its groups).
const ORG = ["org_admin", "auditor"];
export const PAGES = [
  { id: "overview", title: "Overview", render: overview, roles: ORG },
  { id: "people", title: "Users & groups", render: people, roles: ORG },
  { id: "keys", title: "Keys", render: keys },
  { id: "models", title: "Models & access", render: models, roles: ORG },
  { id: "usage", title: "Usage", render: usage },
  { id: "requests", title: "Request log", render: requests, roles: ORG },
  { id: "audit", title: "Audit log", render: audit, roles: ORG },
  { id: "dlp", title: "DLP", render: dlp, roles: ORG },
  { id: "limits", title: "Limits & budgets", render: limits, roles: ORG },
  { id: "alerts", title: "Alerts", render: alerts, roles: ORG },
];
