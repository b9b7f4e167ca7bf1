// Passkeys: the only script of the pages. It runs WebAuthn for the forms marked with
// data-options (rendered by the server with a sealed challenge), puts the authenticator's answer
// into the forms' hidden fields (base64url) and submits them. Without WebAuthn the forms stay
// hidden. No inline script: the CSP allows scripts from this origin only.
'use strict';
(function () {
  function toBuffer(text) {
    var b64 = text.replace(/-/g, '+').replace(/_/g, '/');
    while (b64.length % 4) b64 += '=';
    var binary = atob(b64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes.buffer;
  }

  function toText(buffer) {
    if (!buffer) return '';
    var bytes = new Uint8Array(buffer);
    var binary = '';
    for (var i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
    return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
  }

  function showError(form, message) {
    var el = document.getElementById(form.dataset.error);
    if (el) {
      el.textContent = message;
      el.hidden = false;
    }
  }

  function set(form, name, value) {
    form.elements.namedItem(name).value = value;
  }

  function credentialIds(list) {
    return (list || []).map(function (c) {
      return { type: c.type, id: toBuffer(c.id), transports: c.transports };
    });
  }

  var supported = !!(window.PublicKeyCredential && navigator.credentials);

  var register = document.getElementById('passkey-register');
  if (register && supported) {
    register.hidden = false;
    register.addEventListener('submit', function (event) {
      event.preventDefault();
      var options = JSON.parse(register.dataset.options);
      options.challenge = toBuffer(options.challenge);
      options.user.id = toBuffer(options.user.id);
      options.excludeCredentials = credentialIds(options.excludeCredentials);
      navigator.credentials.create({ publicKey: options }).then(function (credential) {
        var response = credential.response;
        set(register, 'client_data_json', toText(response.clientDataJSON));
        set(register, 'attestation_object', toText(response.attestationObject));
        var transports = typeof response.getTransports === 'function' ? response.getTransports() : [];
        set(register, 'transports', transports.join(','));
        register.submit();
      }, function (err) {
        showError(register, 'The passkey was not created (' + (err && err.name ? err.name : 'error') + '). Try again.');
      });
    });
  }

  var login = document.getElementById('passkey-login');
  if (login && supported) {
    login.hidden = false;
    login.addEventListener('submit', function (event) {
      event.preventDefault();
      var options = JSON.parse(login.dataset.options);
      options.challenge = toBuffer(options.challenge);
      options.allowCredentials = credentialIds(options.allowCredentials);
      navigator.credentials.get({ publicKey: options }).then(function (credential) {
        var response = credential.response;
        set(login, 'credential_id', toText(credential.rawId));
        set(login, 'client_data_json', toText(response.clientDataJSON));
        set(login, 'authenticator_data', toText(response.authenticatorData));
        set(login, 'signature', toText(response.signature));
        set(login, 'user_handle', toText(response.userHandle));
        login.submit();
      }, function (err) {
        showError(login, 'No passkey was used (' + (err && err.name ? err.name : 'error') + '). Try again, or use your password.');
      });
    });
  }
})();
