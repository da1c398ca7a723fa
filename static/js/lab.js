// MailFlow Lab live view: every line the lab listeners exchange, as it happens.
// The server renders each <li>; this module only appends them and lights the panel.
const log = document.getElementById("log");
const status = document.getElementById("status");
const MAX_ITEMS = 300;
let retry = 0;

function light(panel) {
  for (const el of document.querySelectorAll(".panel")) {
    if (Number(el.dataset.panel) === panel) el.setAttribute("aria-current", "step");
    else el.removeAttribute("aria-current");
  }
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws/lab`);
  ws.addEventListener("open", () => {
    retry = 0;
    status.textContent = "";
    ws.send(JSON.stringify({ type: "hello", lang: log.dataset.lang }));
  });
  ws.addEventListener("message", (e) => {
    const msg = JSON.parse(e.data);
    if (msg.type === "recent") {
      log.innerHTML = msg.html;
    } else if (msg.type === "event") {
      log.insertAdjacentHTML("beforeend", msg.html);
      while (log.children.length > MAX_ITEMS) log.firstElementChild.remove();
      light(msg.event.panel);
      log.lastElementChild.scrollIntoView({ block: "nearest" });
    } else if (msg.type === "error") {
      status.textContent = msg.message;
    }
  });
  ws.addEventListener("close", () => {
    status.textContent = log.dataset.labelOffline;
    retry = Math.min(retry + 1, 6);
    setTimeout(connect, 250 * 2 ** retry);
  });
}

connect();
