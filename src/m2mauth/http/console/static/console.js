// Progressive enhancement only: every page works without this file.
document.addEventListener("DOMContentLoaded", () => {
  // A page showing a new secret: its address becomes the application's page, so a
  // reload fetches that page (which shows only the hint) instead of posting again.
  const replace = document.querySelector("[data-replace-url]");
  if (replace) history.replaceState(null, "", replace.getAttribute("href"));
  for (const button of document.querySelectorAll("button[data-copy]")) {
    const input = document.getElementById(button.dataset.copy);
    button.hidden = false;
    button.addEventListener("click", async () => {
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
        button.textContent = "Copied";
      } catch {
        button.textContent = "Press Ctrl+C to copy";
      }
    });
  }
});
