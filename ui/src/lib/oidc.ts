// Signing in at the OIDC issuer: the authorization code flow with PKCE (RFC 7636). The browser
// goes to the issuer with a challenge; it comes back to /login with a code, which the API trades
// (with the verifier kept here) at the issuer's token endpoint.
export interface OidcConfig {
  authorize_url: string;
  client_id: string;
  scope: string;
}

interface Pending {
  verifier: string;
  redirectUri: string;
  next: string;
}

const KEY = 'klaw.oidc';

function base64url(bytes: Uint8Array): string {
  let text = '';
  for (const b of bytes) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function random(n: number): string {
  return base64url(crypto.getRandomValues(new Uint8Array(n)));
}

export async function challenge(verifier: string): Promise<string> {
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return base64url(new Uint8Array(digest));
}

/** Go to the issuer; the state and verifier wait in this tab's sessionStorage. */
export async function beginOidc(config: OidcConfig, next: string): Promise<void> {
  const verifier = random(48);
  const state = random(24);
  const redirectUri = `${location.origin}/login`;
  sessionStorage.setItem(KEY, JSON.stringify({ [state]: { verifier, redirectUri, next } }));
  const url = new URL(config.authorize_url);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: config.client_id,
    redirect_uri: redirectUri,
    scope: config.scope,
    state,
    code_challenge: await challenge(verifier),
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.toString());
}

/** The sign-in this tab began with `state` (spent: it is forgotten), or null. */
export function takeOidc(state: string): Pending | null {
  const raw = sessionStorage.getItem(KEY);
  sessionStorage.removeItem(KEY);
  try {
    const all = raw ? (JSON.parse(raw) as Record<string, Pending>) : {};
    return all[state] ?? null;
  } catch {
    return null;
  }
}
