// Who the token belongs to (GET /auth/me) and what the UI may offer them.
import { ApiError, get, getToken } from './api';
import type { Role } from './types';

const RANK: Record<Role, number> = { viewer: 0, operator: 1, approver: 2, admin: 3 };

class Session {
  subject = $state<string | null>(null);
  role = $state<Role | null>(null);
  /** false until /auth/me answered (or is known not to exist). */
  known = $state(false);
  /** The server has no /auth/me: the role is unknown, so the server decides (403). */
  unknownRole = $state(false);
  canOperate = $derived(this.role ? RANK[this.role] >= RANK.operator : this.unknownRole);
  canApprove = $derived(this.role ? RANK[this.role] >= RANK.approver : this.unknownRole);

  async load(): Promise<void> {
    if (!getToken()) {
      this.clear();
      return;
    }
    try {
      const me = await get<{ subject: string; role: Role }>('/auth/me');
      this.subject = me.subject;
      this.role = me.role;
      this.unknownRole = false;
    } catch (err) {
      if (err instanceof ApiError && (err.status === 404 || err.status === 405)) {
        this.subject = null;
        this.role = null;
        this.unknownRole = true;
      } else if (err instanceof ApiError && err.status === 401) {
        this.clear();
      } else {
        this.unknownRole = true;
      }
    }
    this.known = true;
  }

  clear(): void {
    this.subject = null;
    this.role = null;
    this.unknownRole = false;
    this.known = true;
  }
}

export const session = new Session();
