// imgpipe edge format negotiation: a CloudFront Function (runtime cloudfront-js-2.0), viewer request.
//
// A request for a variant group without an extension, e.g. /derived/photos/cat.jpg/preview, is
// rewritten to the best derivative the browser accepts: AVIF when the group has an AVIF preset, else
// WebP, else JPEG (/derived/photos/cat.jpg/webp.webp). The Accept header is replaced by the one chosen
// type, so the cache (keyed on the normalised Accept) holds at most three variants per group.
// A request for a derivative file (.jpg, .webp, .avif or .png, the extensions imgpipe writes) passes
// unchanged; any other path is answered 404 here: the CDN serves images only, never a document
// (metadata.json holds the uploader's location and capture time; summaries and import outcomes hold
// URLs). The bucket policy lets CloudFront read those four extensions only, so this is the second
// line, not the only one. Paths with dot segments, encoded slashes or backslashes, NUL or control
// characters are refused with 400 before anything else, and so is a last segment starting with `_`
// that is not shaped like a parametric variant.
//
// A file that is not in the bucket yet (a ladder rung, an on-request preset such as the default
// set's AVIF `preview`, a signed variant) is not this function's concern: the bucket answers 403/404
// and the origin group fails over to the render function, which renders, stores and answers it.
//
// Rules for Accept (RFC 9110 §12.5.1): a type is acceptable when listed explicitly with q > 0; JPEG and
// PNG are also acceptable through image/*, */*, or no Accept at all, and are the fallback whatever the
// header says (every browser decodes them). q=0 refuses a type even when a wildcard would allow it.
//
// GROUPS maps a group name to the preset file of each format, for the default preset set
// (functions/core/presets/default.toml: `preview` is JPEG, its group also holds the `webp` preset).
// It is JSON on one line: `imgpipe edge-groups [--presets FILE]` prints it for another preset set, and
// a Rust test keeps it equal to the default set's groups. Tests: negotiate.test.mjs runs this very file
// against cases.json.
var GROUPS = {"blur":{"webp":"blur.webp"},"low-quality":{"jpeg":"low-quality.jpg"},"preview":{"avif":"avif.avif","jpeg":"preview.jpg","webp":"webp.webp"},"thumbnail":{"jpeg":"thumbnail.jpg"}};

var PREFERENCE = ['avif', 'webp', 'jpeg', 'png'];
// When the client names nothing the group has: what every browser decodes first.
var FALLBACK = ['jpeg', 'png', 'webp', 'avif'];
var MIME = { avif: 'image/avif', webp: 'image/webp', jpeg: 'image/jpeg', png: 'image/png' };

// The extensions of the files imgpipe writes (OutputFormat::extension); a Rust test keeps them equal.
var FILE_EXTENSIONS = ['.jpg', '.webp', '.avif', '.png'];

function answer(statusCode, statusDescription, why) {
    return {
        statusCode: statusCode,
        statusDescription: statusDescription,
        headers: { 'content-type': { value: 'text/plain' }, 'cache-control': { value: 'no-store' } },
        body: { encoding: 'text', data: why + '\n' }
    };
}

function badRequest(why) {
    return answer(400, 'Bad Request', why);
}

function isDerivativeFile(name) {
    for (var i = 0; i < FILE_EXTENSIONS.length; i++) {
        var ext = FILE_EXTENSIONS[i];
        if (name.length > ext.length && name.substring(name.length - ext.length) === ext) {
            return true;
        }
    }
    return false;
}

// q-value of each listed media type (lower-case), e.g. {"image/webp": 1, "*/*": 0.8}.
function parseAccept(header) {
    var weights = {};
    if (!header) {
        return weights;
    }
    var parts = header.toLowerCase().split(',');
    for (var i = 0; i < parts.length; i++) {
        var fields = parts[i].split(';');
        var type = fields[0].trim();
        if (!type) {
            continue;
        }
        var q = 1;
        for (var j = 1; j < fields.length; j++) {
            var param = fields[j].trim();
            if (param.indexOf('q=') === 0) {
                var value = parseFloat(param.substring(2));
                q = isNaN(value) ? 0 : Math.max(0, Math.min(1, value));
            }
        }
        weights[type] = Math.max(weights[type] === undefined ? 0 : weights[type], q);
    }
    return weights;
}

function acceptable(format, weights, hasAccept) {
    var explicit = weights[MIME[format]];
    if (explicit !== undefined) {
        return explicit > 0;
    }
    if (format !== 'jpeg' && format !== 'png') {
        return false; // AVIF and WebP only when named: a bare */* client may not decode them
    }
    if (!hasAccept) {
        return true;
    }
    var wildcard = weights['image/*'] !== undefined ? weights['image/*'] : weights['*/*'];
    return wildcard === undefined || wildcard > 0;
}

function unsafePath(uri) {
    if (uri.charAt(0) !== '/') {
        return true;
    }
    // Control characters (including NUL), backslashes, and encoded slashes, backslashes or dots.
    if (/[\u0000-\u001f\u007f\\]/.test(uri) || /%(2f|5c|2e|00)/i.test(uri)) {
        return true;
    }
    var segments = uri.split('/');
    for (var i = 1; i < segments.length; i++) {
        if (segments[i] === '.' || segments[i] === '..') {
            return true;
        }
    }
    return false;
}

// A parametric variant's segment: _<options>[.<22-character signature>].<ext> (functions/core/src/variant.rs).
// The render origin checks the options, the signature and the limits; this only keeps junk off it.
var VARIANT = /^_[a-z0-9-]{1,80}(\.[A-Za-z0-9_-]{22})?\.(jpg|webp|avif|png)$/;

function handler(event) {
    var request = event.request;
    var uri = request.uri;
    if (unsafePath(uri)) {
        return badRequest('path refused');
    }
    var slash = uri.lastIndexOf('/');
    var last = uri.substring(slash + 1);
    if (last.charAt(0) === '_' && !VARIANT.test(last)) {
        return badRequest('not a variant: _<options>[.<signature>].<ext>');
    }
    var group = GROUPS.hasOwnProperty(last) ? GROUPS[last] : null;
    if (!group || slash === 0) {
        if (isDerivativeFile(last)) {
            return request; // a derivative file: unchanged
        }
        return answer(404, 'Not Found', 'not an image of this CDN');
    }
    var accept = request.headers.accept ? request.headers.accept.value : '';
    var weights = parseAccept(accept);
    var chosen = null;
    for (var i = 0; i < PREFERENCE.length && !chosen; i++) {
        var format = PREFERENCE[i];
        if (group[format] && acceptable(format, weights, accept !== '')) {
            chosen = format;
        }
    }
    for (var k = 0; k < FALLBACK.length && !chosen; k++) {
        // Nothing the client accepts is available: the most widely decoded format the group has.
        if (group[FALLBACK[k]]) {
            chosen = FALLBACK[k];
        }
    }
    request.uri = uri.substring(0, slash + 1) + group[chosen];
    request.headers.accept = { value: MIME[chosen] };
    return request;
}
