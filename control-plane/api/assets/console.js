// Tollgate console's one script, progressive enhancement only: every page works without it.
// - The type-ahead of account fields: without the script the field is a search form whose
//   results the server lists; with it, the list fills as you type.
// - Dialogs: a link with data-dialog opens its <dialog> in place; without the script the link
//   leads to the page with the dialog open.
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
  for (const opener of document.querySelectorAll("[data-dialog]")) {
    const dialog = document.getElementById(opener.dataset.dialog);
    opener.addEventListener("click", (event) => {
      event.preventDefault();
      if (dialog.open) dialog.close();
      dialog.showModal();
      const first = dialog.querySelector("select, input:not([type=hidden])");
      if (first) first.focus();
    });
  }
  for (const closer of document.querySelectorAll("[data-close-dialog]")) {
    closer.addEventListener("click", (event) => {
      const dialog = closer.closest("dialog");
      if (dialog) { event.preventDefault(); dialog.close(); }
    });
  }
});
