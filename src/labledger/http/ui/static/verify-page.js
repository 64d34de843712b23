// Wires the /verify form to receipt.js; the page itself never touches the network.
"use strict";

(function () {
  const form = document.getElementById("verify-form");
  const receiptText = document.getElementById("receipt-text");
  const keyText = document.getElementById("key-text");
  const keySource = document.getElementById("key-source");

  document.getElementById("receipt-file").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (file) receiptText.value = await file.text();
  });
  form.addEventListener("dragover", (event) => event.preventDefault());
  form.addEventListener("drop", async (event) => {
    event.preventDefault();
    const file = event.dataTransfer.files[0];
    if (file) receiptText.value = await file.text();
  });
  document.getElementById("use-served-key").addEventListener("click", (event) => {
    keyText.value = event.target.dataset.key;
    keySource.textContent = "This key was shown by the same server that issued the receipt: it proves the receipt matches this server, not that the server is the one your course published. Compare it with the key your course published.";
  });
  keyText.addEventListener("input", () => {
    keySource.textContent = "A key you supplied. It proves most when your course published it somewhere the ledger's operator cannot change.";
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const outcome = await window.labledgerVerifyReceipt(receiptText.value, keyText.value);
    show(outcome);
  });

  function show(outcome) {
    const result = document.getElementById("result");
    const verdict = document.getElementById("verdict");
    const steps = document.getElementById("steps");
    result.hidden = false;
    result.dataset.verdict = outcome.verdict;
    result.dataset.field = outcome.field || "";
    verdict.textContent = outcome.verdict === "valid"
      ? `Valid: this entry is in the ledger's signed tree of ${outcome.treeSize} entries.`
      : "Not valid: this receipt does not prove what it shows.";
    verdict.className = outcome.verdict;
    steps.replaceChildren(...outcome.steps.map((s) => {
      const li = document.createElement("li");
      li.className = s.ok ? "ok" : "failed";
      li.textContent = (s.ok ? "✓ " : "✗ ") + s.message;
      return li;
    }));
    const box = document.getElementById("entry-box");
    const entry = document.getElementById("entry");
    box.hidden = !outcome.entry;
    entry.replaceChildren();
    if (outcome.entry) {
      for (const [name, value] of Object.entries(outcome.entry.content)) {
        const dt = document.createElement("dt");
        dt.textContent = name;
        const dd = document.createElement("dd");
        dd.textContent = typeof value === "string" ? value : JSON.stringify(value);
        entry.append(dt, dd);
      }
    }
  }
})();
