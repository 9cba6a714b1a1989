// Portcullis step-up and enrolment pages: runs the WebAuthn ceremonies with the bundled
// @simplewebauthn/browser (window.SimpleWebAuthnBrowser) against the gateway's JSON endpoints.
// Served from /.portcullis/assets/mfa.js; no inline script, no third-party code.
(() => {
  'use strict';
  const root = document.getElementById('mfa');
  if (root === null) return;
  const csrf = root.dataset.csrf ?? '';
  const rd = root.dataset.rd ?? '/';
  const token = root.dataset.token;
  const lib = window.SimpleWebAuthnBrowser;

  async function post(path, body) {
    const res = await fetch(path, {
      method: 'POST',
      credentials: 'same-origin',
      headers: { 'content-type': 'application/json', accept: 'application/json', 'x-portcullis-csrf': csrf },
      body: JSON.stringify(body),
    });
    let data = {};
    try {
      data = await res.json();
    } catch {
      data = {};
    }
    if (!res.ok) throw new Error(typeof data.message === 'string' ? data.message : `request failed (${res.status})`);
    return data;
  }

  function say(id, text, isError) {
    const el = document.getElementById(id);
    if (el === null) return;
    el.textContent = text;
    el.setAttribute('role', isError ? 'alert' : 'status');
    el.style.color = isError ? '#b42318' : '';
  }

  function ceremonyError(err) {
    if (err && err.name === 'NotAllowedError') return 'The request was cancelled or timed out. Try again.';
    if (err && err.name === 'InvalidStateError') return 'This authenticator is already registered.';
    return err && err.message ? err.message : String(err);
  }

  const use = document.getElementById('use-passkey');
  if (use !== null) {
    use.addEventListener('click', async () => {
      use.disabled = true;
      say('passkey-status', 'Waiting for your passkey…', false);
      try {
        if (lib === undefined || !lib.browserSupportsWebAuthn()) throw new Error('This browser does not support passkeys.');
        const { options } = await post('/.portcullis/mfa/webauthn/authenticate/options', {});
        const response = await lib.startAuthentication({ optionsJSON: options });
        const done = await post('/.portcullis/mfa/webauthn/authenticate', { response, rd, ...(token === undefined ? {} : { token }) });
        say('passkey-status', 'Confirmed.', false);
        window.location.assign(done.redirect);
      } catch (err) {
        say('passkey-status', ceremonyError(err), true);
        use.disabled = false;
      }
    });
  }

  const add = document.getElementById('add-passkey');
  if (add !== null) {
    add.addEventListener('submit', async (event) => {
      event.preventDefault();
      const button = add.querySelector('button');
      if (button !== null) button.disabled = true;
      say('passkey-status', 'Follow your browser’s prompt…', false);
      try {
        if (lib === undefined || !lib.browserSupportsWebAuthn()) throw new Error('This browser does not support passkeys.');
        const name = document.getElementById('passkey-name')?.value ?? '';
        const { options } = await post('/.portcullis/mfa/webauthn/register/options', {});
        const response = await lib.startRegistration({ optionsJSON: options });
        const done = await post('/.portcullis/mfa/webauthn/register', { response, name, rd });
        if (Array.isArray(done.recovery_codes) && done.recovery_codes.length > 0) {
          const section = document.getElementById('recovery-codes');
          section.replaceChildren();
          const h = document.createElement('h2');
          h.textContent = 'Save your recovery codes';
          const p = document.createElement('p');
          p.textContent = 'Passkey added. Each recovery code works once, to get back in when you lose a device. They are shown only now.';
          const list = document.createElement('ol');
          list.className = 'codes';
          list.id = 'codes';
          for (const c of done.recovery_codes) {
            const li = document.createElement('li');
            const code = document.createElement('code');
            code.textContent = c;
            li.append(code);
            list.append(li);
          }
          const go = document.createElement('a');
          go.href = done.redirect;
          go.id = 'continue-after-codes';
          go.textContent = 'I saved them — continue';
          section.append(h, p, list, go);
          section.hidden = false;
          say('passkey-status', 'Passkey added.', false);
        } else {
          window.location.assign(done.redirect);
        }
      } catch (err) {
        say('passkey-status', ceremonyError(err), true);
        if (button !== null) button.disabled = false;
      }
    });
  }
})();
