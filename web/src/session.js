// Who is logged in (from /ui/whoami or /ui/login). Fixed for the page's life: logging in
// or out reloads the page.

const RANK = { viewer: 1, operator: 2, owner: 3 };

export const session = {
  role: null,
  islands: [],
  auth: null,
  /** true when the role reaches `role` (viewer < operator < owner) */
  can(role) {
    return (RANK[this.role] || 0) >= RANK[role];
  },
};
