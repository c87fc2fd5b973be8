// Tollgate console: the type-ahead of account fields. Without this script the same field is a
// search form whose results the server lists; with it, the list fills as you type.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  for (const input of document.querySelectorAll("input[data-suggest]")) {
    const list = document.getElementById(input.getAttribute("aria-controls"));
    let timer = null;
    let asked = 0;
    input.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(async () => {
        const term = input.value.trim();
        const mine = ++asked;
        if (term === "") { list.replaceChildren(); input.setAttribute("aria-expanded", "false"); return; }
        const answer = await fetch(input.dataset.suggest + "?q=" + encodeURIComponent(term), {
          headers: { "Accept": "application/json" }, credentials: "same-origin",
        });
        if (!answer.ok || mine !== asked) return;
        const { accounts } = await answer.json();
        const items = accounts.map((a) => {
          const li = document.createElement("li");
          li.setAttribute("role", "option");
          const link = document.createElement("a");
          link.href = a.href;
          link.textContent = a.name;
          li.append(link);
          return li;
        });
        if (items.length === 0) {
          const li = document.createElement("li");
          li.className = "empty";
          li.textContent = "No account matches “" + term + "”.";
          items.push(li);
        }
        list.replaceChildren(...items);
        input.setAttribute("aria-expanded", "true");
      }, 150);
    });
  }
});
