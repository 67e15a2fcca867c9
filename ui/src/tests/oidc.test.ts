import { describe, expect, it } from 'vitest';
import { challenge, takeOidc } from '../lib/oidc';

describe('PKCE', () => {
  it('makes the S256 challenge of RFC 7636 (appendix B)', async () => {
    expect(await challenge('dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk')).toBe('E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM');
  });

  it('gives a pending sign-in once, and only for its state', () => {
    const pending = { verifier: 'v', redirectUri: 'http://x/login', next: '/runs' };
    sessionStorage.setItem('klaw.oidc', JSON.stringify({ s1: pending }));
    expect(takeOidc('other')).toBeNull();
    sessionStorage.setItem('klaw.oidc', JSON.stringify({ s1: pending }));
    expect(takeOidc('s1')).toEqual(pending);
    expect(takeOidc('s1')).toBeNull();
  });
});
