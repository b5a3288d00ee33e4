# Sphinx configuration of the divert.fleet docs site, built by `make docs` (tools/docs.sh) from the
# rst files antsibull-docs writes for the collection. Started from `antsibull-docs sphinx-init`.
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

project = 'divert.fleet'
copyright = 'divert.fleet contributors'
title = 'divert.fleet collection documentation'
html_short_title = 'divert.fleet'

extensions = ['sphinx.ext.intersphinx', 'sphinx_antsibull_ext']

pygments_style = 'ansible'
highlight_language = 'YAML+Jinja'

html_theme = 'sphinx_ansible_theme'
html_show_sphinx = False
display_version = False
html_use_smartypants = True
html_use_modindex = False
html_use_index = False
html_copy_source = False

# References into Ansible's own docs (return values, ansible.builtin plugins) resolve against an
# inventory that tools/docs.sh writes from ansible-refs.txt, so the site builds offline and every
# link points at docs.ansible.com.
intersphinx_mapping = {
    'ansible_devel': ('https://docs.ansible.com/projects/ansible/devel/', '../ansible_devel.inv'),
}

default_role = 'any'
nitpicky = True
