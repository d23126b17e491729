// The console's pages, in menu order. `roles` hides a page from roles the admin API would refuse
// it to anyway (the API decides; this only keeps the menu honest).
import { overview, usage, requests, dlp, limits } from "./ops.js";
import { people, keys, models } from "./directory.js";
import { audit, alerts } from "./trail.js";

const STAFF = ["org_admin", "group_admin", "auditor"];
export const PAGES = [
  { id: "overview", title: "Overview", render: overview, roles: STAFF },
  { id: "people", title: "Users & groups", render: people, roles: STAFF },
  { id: "keys", title: "Keys", render: keys },
  { id: "models", title: "Models & access", render: models },
  { id: "usage", title: "Usage", render: usage },
  { id: "requests", title: "Request log", render: requests },
  { id: "audit", title: "Audit log", render: audit, roles: ["org_admin", "auditor"] },
  { id: "dlp", title: "DLP", render: dlp, roles: ["org_admin", "auditor"] },
  { id: "limits", title: "Limits & budgets", render: limits, roles: STAFF },
  { id: "alerts", title: "Alerts", render: alerts, roles: ["org_admin", "auditor"] },
];
