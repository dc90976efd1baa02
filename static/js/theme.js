// Runs before the page is drawn: mark that scripts run (the menu folds on small
// screens) and apply the theme a person chose, if any (otherwise the system's).
(() => {
  const root = document.documentElement;
  root.classList.add("js");
  try {
    const theme = localStorage.getItem("backstop-theme");
    if (theme === "light" || theme === "dark") root.dataset.theme = theme;
  } catch { /* storage refused: follow the system */ }
})();
