// Attachments in the web client: images inline, other files as links. An image is loaded
// only from a host the server lists (CHAT_ATTACHMENT_HOSTS, given to the page in a meta
// tag, the same list as the page's CSP img-src), so a message never makes the reader's
// browser contact anyone else; from another host it is only a link, followed on a click.

// allowedHosts is the server's list, as hosts the way URL.host writes them.
const allowedHosts = new Set(
  (document.querySelector('meta[name="chatd-attachment-hosts"]')?.getAttribute('content') || '').split(/\s+/).filter(Boolean),
);

function parse(url) {
  try {
    return new URL(url);
  } catch {
    return null;
  }
}

// fmtSize writes a byte count the way people read it.
function fmtSize(n) {
  if (n < 1024) return `${n} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = n / 1024;
  let i = 0;
  for (; v >= 1024 && i < units.length - 1; i++) v /= 1024;
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

function el(tag, props) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v != null) e.setAttribute(k, String(v));
  }
  return e;
}

// attachmentNode shows one attachment: an image from a listed host inline (lazy, sized so
// the page does not jump when it arrives), anything else as a link with name and size.
function attachmentNode(a) {
  const u = parse(a.url);
  const https = u && u.protocol === 'https:';
  const link = el('a', { href: https ? u.href : null, target: '_blank', rel: 'noopener noreferrer nofollow', class: 'attachment' });
  if (https && allowedHosts.has(u.host) && /^image\//i.test(a.content_type)) {
    link.classList.add('image');
    const img = el('img', { src: u.href, alt: a.name, loading: 'lazy', decoding: 'async',
      width: a.width, height: a.height, 'data-testid': 'attachment-image', referrerpolicy: 'no-referrer' });
    link.append(img);
    return link;
  }
  link.classList.add('file');
  link.dataset.testid = 'attachment-link';
  link.textContent = `📎 ${a.name} (${fmtSize(a.size)})`;
  return link;
}

// attachmentsNode returns the attachments of a message as one element, or null when it
// has none.
export function attachmentsNode(attachments) {
  if (!attachments?.length) return null;
  const box = document.createElement('div');
  box.className = 'attachments';
  box.append(...attachments.map(attachmentNode));
  return box;
}

// attachmentsSummary is a one-line preview of a message's attachments, for lists.
export function attachmentsSummary(attachments) {
  if (!attachments?.length) return '';
  return attachments.length === 1 ? `📎 ${attachments[0].name}` : `📎 ${attachments.length} files`;
}
