// The stage: moves the packet and toggles classes from the data the server put in the
// page (#stage-moves, one row per recorded event; the links' data-ab/data-ba rest
// points). It never decides what happened: step n shows row n, so ← shows exactly what
// step n-1 showed. Motion is a CSS transform through the Web Animations API only.
//
// Usable by any page that carries a stage (the flow page, a classroom console):
//   import { createStage } from "/static/js/stage.js";
//   const stage = createStage(document.getElementById("stage"));
//   stage.show(5);  // animate when it is one step forward

const LINK = 0, SRC = 1, DST = 2, DIR = 3, TLS = 4, TEXT = 5, LIVE = 6, FORWARD = 7;
const PREFIX = { c: "C:", s: "S:", n: "—" };
const DIRS = { c: "dir-c2s", s: "dir-s2c", n: "dir-note" };

export function createStage(wrap, live = document.querySelector("[data-stage-live]")) {
  let moves = [];
  let svgs = [];
  let current = -1;
  const reduced = window.matchMedia("(prefers-reduced-motion: reduce)");

  function load() {
    const data = wrap.querySelector("#stage-moves");
    moves = data ? JSON.parse(data.textContent) : [];
    svgs = [...wrap.querySelectorAll("svg[data-stage]")];
  }

  function restPoint(svg, move) {
    if (move[LINK]) {
      const link = svg.querySelector(`[data-link="${CSS.escape(move[LINK])}"]`);
      if (link) {
        const [x, y, sx, sy] = (move[FORWARD] ? link.dataset.ab : link.dataset.ba).split(" ").map(Number);
        return { x, y, sx, sy };
      }
    }
    // A note an actor makes alone (a signature, a decoding): the packet rests under it.
    const node = svg.querySelector(`[data-actor="${CSS.escape(move[SRC])}"]`);
    if (!node) return null;
    const [x, y] = node.dataset.rest.split(" ").map(Number);
    return { x, y, sx: x, sy: y };
  }

  function paint(svg, step, move, travel) {
    for (const link of svg.querySelectorAll("[data-link]")) {
      const on = !!move && link.dataset.link === move[LINK];
      if (on) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
      link.classList.toggle("is-tls", on && !!move[TLS]);
      link.classList.toggle("is-plain", on && !move[TLS]);
    }
    for (const node of svg.querySelectorAll("[data-actor]")) {
      node.classList.toggle("speaking", !!move && node.dataset.actor === move[SRC]);
      node.classList.toggle("listening", !!move && node.dataset.actor === move[DST] && move[DST] !== move[SRC]);
    }
    for (const mail of svg.querySelectorAll("[data-mail]")) {
      const d = mail.dataset;
      const [start, end, seen, deleted] = [d.start, d.end, d.seen, d.deleted].map(Number);
      let state = "here";
      if (step < start || (end && step >= end)) state = "gone";
      else if (deleted && step >= deleted) state = "deleted";
      else if (seen && step >= seen) state = "seen";
      mail.setAttribute("class", `mail kind-${d.mail} is-${state}`);
    }
    const packet = svg.querySelector("[data-packet]");
    if (!packet) return;
    const at = move && restPoint(svg, move);
    packet.getAnimations().forEach((a) => a.cancel());
    if (!at) {
      packet.setAttribute("class", "packet none");
      return;
    }
    packet.setAttribute("class", `packet ${DIRS[move[DIR]]}${move[TLS] ? " tls" : ""}`);
    packet.querySelector(".ptext").textContent = `${PREFIX[move[DIR]]} ${move[TEXT]}`;
    const arrow = packet.querySelector(".arrow");
    const angle = Math.round((Math.atan2(at.y - at.sy, at.x - at.sx) * 180) / Math.PI);
    const base = arrow.getAttribute("transform").replace(/\s*rotate\([^)]*\)/, "");
    arrow.setAttribute("transform", `${base} rotate(${at.x === at.sx && at.y === at.sy ? 0 : angle})`);
    const end = `translate(${at.x}px, ${at.y}px)`;
    packet.style.transform = end;
    if (travel && !reduced.matches) {
      packet.animate([{ transform: `translate(${at.sx}px, ${at.sy}px)` }, { transform: end }], {
        duration: 450,
        easing: "ease-out",
      });
    }
  }

  function show(step, { animate = true } = {}) {
    const travel = animate && step === current + 1;
    current = step;
    const move = step > 0 ? moves[step - 1] : null;
    for (const svg of svgs) paint(svg, step, move, travel);
    if (live) live.textContent = move ? move[LIVE] : "";
  }

  // A fresh run (the server ran the scenario again): new data, same stage.
  function replace(html, step) {
    wrap.innerHTML = html;
    load();
    current = -1;
    show(step, { animate: false });
  }

  load();
  return { show, replace, get step() { return current; }, get total() { return moves.length; } };
}
