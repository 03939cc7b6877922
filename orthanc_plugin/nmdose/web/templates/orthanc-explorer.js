// #lookup holds two nested [data-role=content] divs: prepending to both cloned the button (two of them).
$('#lookup').live('pagebeforecreate', function() {
  if ($('#nmdose-home').length) return;
  var b = $('<a>').attr({id: 'nmdose-home', 'data-role': 'button', href: '../nmdose/ui/index',
                         'data-ajax': 'false', rel: 'external', 'data-icon': 'grid'}).text('nmdose');
  $('#lookup').children('[data-role="content"]').first().prepend(b);
});
$('#study').live('pagebeforecreate', function() {
  if ($('#nmdose-study-dose').length) return;
  var b = $('<a>').attr({id: 'nmdose-study-dose', 'data-role': 'button', href: '#', 'data-icon': 'info'})
                  .text('dose for this study');
  b.insertBefore($('#study-delete').parent().parent());
  b.click(function() {
    if (!$.mobile.pageData) return false;
    $.ajax({url: '../studies/' + $.mobile.pageData.uuid, dataType: 'json', success: function(s) {
      window.open('../nmdose/ui/study/' + encodeURIComponent(s.MainDicomTags.StudyInstanceUID));
    }});
    return false;
  });
});
