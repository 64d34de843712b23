// Sorting and filtering for tables marked .sortable; the page works without it.
"use strict";

(function () {
  for (const table of document.querySelectorAll("table.sortable")) {
    const headers = [...table.tHead.rows[0].cells];
    headers.forEach((th, column) => {
      const button = th.querySelector("button");
      if (!button) return;
      button.addEventListener("click", () => {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        headers.forEach((h) => h.setAttribute("aria-sort", "none"));
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const body = table.tBodies[0];
        const rows = [...body.rows];
        const key = (row) => {
          const cell = row.cells[column];
          const text = cell.dataset.sort ?? cell.textContent.trim();
          const number = Number(text);
          return text !== "" && !Number.isNaN(number) ? number : text.toLowerCase();
        };
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const order = x < y ? -1 : x > y ? 1 : 0;
          return ascending ? order : -order;
        });
        body.append(...rows);
      });
    });
  }
  // A row shows when it holds the filter's text and carries the chosen mark (data-marks).
  for (const table of document.querySelectorAll("table.sortable")) {
    const text = document.querySelector(`input[data-filter="${table.id}"]`);
    const mark = document.querySelector(`select[data-marks-filter="${table.id}"]`);
    const apply = () => {
      const needle = text ? text.value.trim().toLowerCase() : "";
      const wanted = mark ? mark.value : "";
      for (const row of table.tBodies[0].rows) {
        const marks = (row.dataset.marks || "").split(" ");
        row.hidden =
          (needle !== "" && !row.textContent.toLowerCase().includes(needle)) ||
          (wanted !== "" && !marks.includes(wanted));
      }
    };
    if (text) text.addEventListener("input", apply);
    if (mark) mark.addEventListener("change", apply);
  }
})();
