(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("point-config").textContent);
  var list = document.getElementById("movie_point_list_container");
  var pager = document.getElementById("paging_point");
  var page = parseInt(new URLSearchParams(window.location.search).get("page") || "1", 10);
  if (!(page >= 1)) { page = 1; }

  function node(tag, attrs, text) {
    var el = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) { el.setAttribute(k, attrs[k]); });
    if (text !== undefined) { el.textContent = text === null ? "" : String(text); }
    return el;
  }
  function pageHref(n) { return "?midx=" + cfg.midx + "&page=" + n; }
  function finish(state) {
    document.body.setAttribute("data-render", state);
    document.body.appendChild(node("div", {id: "render-done"}));
  }
  function renderPager(total) {
    var pages = Math.ceil(total / cfg.pageSize);
    var first = Math.floor((page - 1) / 10) * 10 + 1;
    var last = Math.min(first + 9, Math.max(pages, page));
    var ul = node("ul", {});
    if (first > 1) {
      var prev = node("button", {type: "button", "class": "btn-paging prev", "data-page": first - 1}, "이전 10개");
      prev.addEventListener("click", function () { window.location.search = pageHref(first - 1); });
      pager.appendChild(prev);
    }
    for (var n = first; n <= last; n++) {
      var li = node("li", n === page ? {"class": "on"} : {});
      li.appendChild(n === page ? node("strong", {}, n) : node("a", {href: pageHref(n), "data-page": n}, n));
      ul.appendChild(li);
    }
    pager.appendChild(ul);
    if (last < pages) {
      var next = node("button", {type: "button", "class": "btn-paging next", "data-page": last + 1}, "다음 10개");
      next.addEventListener("click", function () { window.location.search = pageHref(last + 1); });
      pager.appendChild(next);
    }
  }
  function render(doc) {
    (doc.List || []).forEach(function (item) {
      var li = node("li", {"class": cfg.commentClass, "data-idx": item.CommentIdx});
      var box = node("div", {"class": "box-contents"});
      var info = node("ul", {"class": "writerinfo"});
      info.appendChild(node("li", {"class": "writer-name"}, item.WriterNickName));
      var day = node("li", {"class": "day"});
      day.appendChild(node("span", {}, item.RegistDate));
      info.appendChild(day);
      box.appendChild(info);
      var text = node("div", {"class": cfg.commentClass});
      text.appendChild(node("p", {}, item.CommentText));
      box.appendChild(text);
      box.appendChild(node("span", {"class": "egg-icon egg-" + item.EggPoint}));
      li.appendChild(box);
      list.appendChild(li);
    });
    renderPager(doc.TotalCount || 0);
  }
  function load() {
    if (cfg.empty) { finish("empty"); return; }
    fetch(cfg.endpoint, {
      method: "POST",
      headers: {"Content-Type": "application/json; charset=utf-8"},
      body: JSON.stringify({movieIdx: cfg.midx, pageIndex: page, pageSize: cfg.pageSize, orderType: 0,
                            filterType: 1, isTotalCount: true, isMyPoint: "false"})
    }).then(function (resp) {
      if (!resp.ok) { throw new Error("HTTP " + resp.status); }
      return resp.json();
    }).then(function (outer) {
      render(JSON.parse(outer.d));
      finish("ok");
    }).catch(function (err) {
      finish("error: " + err.message);
    });
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", load);
  } else {
    load();
  }
})();
