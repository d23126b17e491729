// The end of single sign-on: the page that carries the new access token (in <meta> tags, never
// in the URL) hands it to the console in this tab's sessionStorage, then opens the console.
const meta = (name) => document.querySelector(`meta[name="${name}"]`)?.content || "";
const token = meta("tollway-token");
if (token) {
  sessionStorage.setItem("tollway.console", JSON.stringify({
    token, kind: "sso", name: meta("tollway-name"), email: meta("tollway-email"),
    expires: Date.now() + 1000 * Number(meta("tollway-expires-in") || 0),
  }));
}
location.replace("/console/#/overview");
