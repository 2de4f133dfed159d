// berth's dashboard: live logs and confirmations. No build step, no dependencies.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const logs = document.getElementById("logs");
  if (logs && window.EventSource) {
    const source = new EventSource(logs.dataset.src);
    source.onmessage = (event) => {
      logs.textContent += event.data + "\n";
      const lines = logs.textContent.split("\n");
      if (lines.length > 500) logs.textContent = lines.slice(-500).join("\n");
      logs.scrollTop = logs.scrollHeight;
    };
  }
  for (const form of document.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
});
